#include "storage/netfs/nfs_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

// libnfs.h uses struct timeval and friends without including their headers.
#include <sys/time.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw-nfs.h>

namespace vmm::storage {

enum class NfsClient::CallKind { plain, read, attrs, space, file, dir };

struct NfsClient::Call {
  CallKind kind = CallKind::plain;
  nfsfh* fh = nullptr;      // the open file the call works on: closing it waits for the call
  bool done = false;
  bool abandoned = false;   // its caller gave up; completion only frees what it returns
  int status = 0;           // >= 0 success (bytes for reads/writes), -errno on failure
  std::string error;
  std::string data;         // bytes read, or the bytes being written (libnfs keeps pointing at them)
  void* result = nullptr;   // an opened nfsfh or nfsdir
  nfs_stat_64 st{};
  nfs_statvfs_64 space{};
};

namespace {

constexpr int kMaxPollMs = 100;  // libnfs wants nfs_service() now and then even without events

void ignoreResult(int, nfs_context*, void*, void*) {}

void onComplete(int status, nfs_context* ctx, void* data, void* priv) {
  using Kind = NfsClient::CallKind;
  auto* c = static_cast<NfsClient::Call*>(priv);
  c->done = true;
  c->status = status;
  if (status < 0) {
    // `data` is not always the error string (libnfs passes raw replies on some paths).
    const char* e = nfs_get_error(ctx);
    c->error = e && *e ? e : std::strerror(-status);
    return;
  }
  switch (c->kind) {
    case Kind::plain:
      break;
    case Kind::read:
      if (data) c->data.assign(static_cast<const char*>(data), static_cast<size_t>(status));
      break;
    case Kind::attrs:
      c->st = *static_cast<nfs_stat_64*>(data);
      break;
    case Kind::space:
      c->space = *static_cast<nfs_statvfs_64*>(data);
      break;
    case Kind::file:
      if (c->abandoned) nfs_close_async(ctx, static_cast<nfsfh*>(data), ignoreResult, nullptr);
      else c->result = data;
      break;
    case Kind::dir:
      if (c->abandoned) nfs_closedir(ctx, static_cast<nfsdir*>(data));
      else c->result = data;
      break;
  }
}

ErrorCode codeFor(int status) {
  switch (-status) {
    case ENOENT: return ErrorCode::not_found;
    case EEXIST: case ENOTEMPTY: return ErrorCode::conflict;
    case EACCES: case EPERM: case EROFS: return ErrorCode::permission_denied;
    case EINVAL: case EISDIR: case ENOTDIR: case ENAMETOOLONG: case EFBIG: return ErrorCode::invalid_argument;
    default: return ErrorCode::unavailable;
  }
}

template <typename T>
Status toStatus(Result<T> r) {
  if (!r.ok()) return r.takeError();
  return {};
}

}  // namespace

// Forgets its call when it goes (still holding the lock), unless waiting for the call failed:
// then the call stays registered, abandoned, so libnfs can still write its late answer there.
class NfsClient::CallScope {
 public:
  CallScope(Lock lock, NfsClient& client, Call& call) : lock_(std::move(lock)), client_(&client), call_(&call) {}
  CallScope(CallScope&& o) noexcept
      : lock_(std::move(o.lock_)), client_(o.client_), call_(std::exchange(o.call_, nullptr)) {}
  CallScope& operator=(CallScope&&) = delete;
  ~CallScope() {
    if (call_) client_->forget(*call_);
  }

  Status wait(Deadline deadline, const std::string& what) {
    Status st = client_->waitOne(*call_, deadline, what);
    if (!st.ok()) call_ = nullptr;
    return st;
  }
  Call& operator*() const { return *call_; }
  Call* operator->() const { return call_; }

 private:
  Lock lock_;  // declared first: released after the call is forgotten
  NfsClient* client_;
  Call* call_;
};

template <typename Submit>
Result<NfsClient::CallScope> NfsClient::submit(Lock lock, CallKind kind, const std::string& what, Submit queue,
                                               nfsfh* fh) {
  Call& c = newCall(kind, fh);
  if (queue(c) != 0) {
    forget(c);
    return unavailable(what + ": " + nfs_get_error(ctx_));
  }
  return CallScope(std::move(lock), *this, c);
}

template <typename Submit>
Result<NfsClient::CallScope> NfsClient::runLocked(Lock lock, CallKind kind, const std::string& what, Deadline deadline,
                                                  Submit queue, nfsfh* fh) {
  VMM_ASSIGN(auto c, submit(std::move(lock), kind, what, queue, fh));
  VMM_TRY(c.wait(deadline, what));
  if (c->status < 0) return callError(*c, what);
  return c;
}

template <typename Submit>
Result<NfsClient::CallScope> NfsClient::run(CallKind kind, const std::string& what, Deadline deadline, Submit queue,
                                            nfsfh* fh) {
  VMM_ASSIGN(auto lk, lock(deadline, what));
  return runLocked(std::move(lk), kind, what, deadline, queue, fh);
}

NfsClient::NfsClient(std::string host, std::string exportPath) : host_(std::move(host)), export_(std::move(exportPath)) {}

NfsClient::~NfsClient() {
  if (!ctx_) return;
  for (nfsfh* fh : deferredCloses_) nfs_close_async(ctx_, fh, ignoreResult, nullptr);
  // Cancels whatever is still queued; the callbacks write into calls_, freed afterwards.
  nfs_destroy_context(ctx_);
  calls_.clear();
}

bool NfsClient::healthy() const { return !broken_; }

Result<std::shared_ptr<NfsClient>> NfsClient::mount(const std::string& host, const std::string& exportPath,
                                                    Deadline deadline) {
  std::shared_ptr<NfsClient> client(new NfsClient(host, exportPath));
  client->ctx_ = nfs_init_context();
  if (!client->ctx_) return internalError("cannot create an NFS client context");
  nfs_set_dircache(client->ctx_, 0);  // listings must show other clients' changes at once
  std::string what = "mounting " + host + ":" + exportPath;
  VMM_ASSIGN(auto lk, client->lock(deadline, what));
  VMM_ASSIGN(auto c, client->submit(std::move(lk), CallKind::plain, what, [&](Call& call) {
    return nfs_mount_async(client->ctx_, host.c_str(), exportPath.c_str(), onComplete, &call);
  }));
  if (auto st = c.wait(deadline, what); !st.ok()) {
    if (st.error().code != ErrorCode::unavailable) return st.takeError();
    return unavailable(st.error().message + " (is the server running, with its portmapper on port 111?)");
  }
  if (c->status < 0) {
    Error e = client->callError(*c, what);
    if (e.code == ErrorCode::permission_denied || e.code == ErrorCode::not_found)
      e.message += " (is " + exportPath + " exported to this host?)";
    return e;
  }
  client->readMax_ = std::max<uint64_t>(nfs_get_readmax(client->ctx_), 4096);
  client->writeMax_ = std::max<uint64_t>(nfs_get_writemax(client->ctx_), 4096);
  return client;
}

Result<NfsClient::Lock> NfsClient::lock(Deadline deadline, const std::string& what) {
  Lock lk(mu_, std::defer_lock);
  if (deadline.isNever()) lk.lock();
  else if (!lk.try_lock_for(deadline.remaining()))
    return timeoutError(what + ": the connection to NFS server " + host_ + " is busy with a call the server has not answered");
  if (broken_) return unavailable(what + ": the connection to NFS server " + host_ + " failed; the pool must be started again");
  calls_.remove_if([](const std::unique_ptr<Call>& c) { return c->done && c->abandoned; });
  flushDeferredCloses();
  return lk;
}

NfsClient::Call& NfsClient::newCall(CallKind kind, nfsfh* fh) {
  calls_.push_back(std::make_unique<Call>());
  calls_.back()->kind = kind;
  calls_.back()->fh = fh;
  return *calls_.back();
}

void NfsClient::forget(Call& call) {
  calls_.remove_if([&](const std::unique_ptr<Call>& c) { return c.get() == &call; });
}

Status NfsClient::wait(const std::vector<Call*>& calls, Deadline deadline, const std::string& what) {
  auto pending = [&] { return std::any_of(calls.begin(), calls.end(), [](Call* c) { return !c->done; }); };
  // Calls still out stay in calls_ (libnfs will write to them); the caller forgets the others.
  auto abandon = [&] {
    for (Call* c : calls)
      if (!c->done) c->abandoned = true;
  };
  while (pending()) {
    if (deadline.expired()) {
      abandon();
      return timeoutError(what + ": NFS server " + host_ + " did not answer in time");
    }
    int timeout = deadline.pollTimeoutMs();
    if (timeout < 0 || timeout > kMaxPollMs) timeout = kMaxPollMs;
    pollfd p{nfs_get_fd(ctx_), static_cast<short>(nfs_which_events(ctx_)), 0};
    int n = ::poll(&p, 1, timeout);
    if (n < 0 && errno != EINTR) {
      abandon();
      return systemError(what + ": poll", errno);
    }
    if (nfs_service(ctx_, n > 0 ? p.revents : 0) < 0) {
      broken_ = true;
      abandon();
      return unavailable(what + ": connection to NFS server " + host_ + " failed: " + nfs_get_error(ctx_));
    }
  }
  return {};
}

Error NfsClient::callError(const Call& call, const std::string& what) const {
  return Error{codeFor(call.status), what + ": " + call.error};
}

void NfsClient::flushDeferredCloses() {
  std::vector<nfsfh*> later;
  {
    MutexLock g(deferredMu_);
    later.swap(deferredCloses_);
  }
  for (nfsfh* fh : later) {
    bool busy = std::any_of(calls_.begin(), calls_.end(), [&](const auto& c) { return c->fh == fh && !c->done; });
    if (busy) {
      MutexLock g(deferredMu_);
      deferredCloses_.push_back(fh);
    } else {
      nfs_close_async(ctx_, fh, ignoreResult, nullptr);
    }
  }
}

void NfsClient::closeLater(nfsfh* fh) {
  {
    MutexLock g(deferredMu_);
    deferredCloses_.push_back(fh);
  }
  // Queue it now when nobody is using the context; otherwise the next call does.
  Lock lk(mu_, std::try_to_lock);
  if (lk.owns_lock() && !broken_) flushDeferredCloses();
}

Status NfsClient::unmount(Deadline deadline) {
  std::string what = "unmounting " + host_ + ":" + export_;
  VMM_ASSIGN(auto lk, lock(deadline, what));
  // The answer does not matter (UMNT is advisory), only that the server had it.
  VMM_ASSIGN(auto c, submit(std::move(lk), CallKind::plain, what, [&](Call& call) {
    return nfs_umount_async(ctx_, onComplete, &call);
  }));
  return c.wait(deadline, what);
}

Result<NfsSpace> NfsClient::statvfs(Deadline deadline) {
  VMM_ASSIGN(auto c, run(CallKind::space, "statvfs on " + host_ + ":" + export_, deadline, [&](Call& call) {
    return nfs_statvfs64_async(ctx_, "/", onComplete, &call);
  }));
  NfsSpace s;
  uint64_t unit = c->space.f_frsize ? c->space.f_frsize : c->space.f_bsize;
  s.total = c->space.f_blocks * unit;
  s.free = c->space.f_bfree * unit;
  s.available = c->space.f_bavail * unit;
  return s;
}

Result<std::vector<NfsDirEntry>> NfsClient::listDir(const std::string& path, Deadline deadline) {
  VMM_ASSIGN(auto c, run(CallKind::dir, "listing " + host_ + ":" + export_ + path, deadline, [&](Call& call) {
    return nfs_opendir_async(ctx_, path.c_str(), onComplete, &call);
  }));
  auto* dir = static_cast<nfsdir*>(c->result);
  std::vector<NfsDirEntry> out;
  while (nfsdirent* d = nfs_readdir(ctx_, dir)) {
    if (!std::strcmp(d->name, ".") || !std::strcmp(d->name, "..")) continue;
    NfsDirEntry e;
    e.name = d->name;
    e.attrs.regular = d->type == NF3REG;
    e.attrs.directory = d->type == NF3DIR;
    e.attrs.size = d->size;
    e.attrs.used = d->used;
    out.push_back(std::move(e));
  }
  nfs_closedir(ctx_, dir);
  std::sort(out.begin(), out.end(), [](const NfsDirEntry& a, const NfsDirEntry& b) { return a.name < b.name; });
  return out;
}

Result<NfsAttributes> NfsClient::stat(const std::string& path, Deadline deadline) {
  VMM_ASSIGN(auto c, run(CallKind::attrs, "stat " + host_ + ":" + export_ + path, deadline, [&](Call& call) {
    return nfs_lstat64_async(ctx_, path.c_str(), onComplete, &call);
  }));
  NfsAttributes a;
  a.regular = S_ISREG(c->st.nfs_mode);
  a.directory = S_ISDIR(c->st.nfs_mode);
  a.size = c->st.nfs_size;
  a.used = c->st.nfs_used ? c->st.nfs_used : c->st.nfs_blocks * 512;
  return a;
}

Result<NfsFile> NfsClient::create(const std::string& path, Deadline deadline) {
  VMM_ASSIGN(auto c, run(CallKind::file, "creating " + host_ + ":" + export_ + path, deadline, [&](Call& call) {
    return nfs_create_async(ctx_, path.c_str(), O_RDWR | O_EXCL, 0644, onComplete, &call);
  }));
  return NfsFile(shared_from_this(), static_cast<nfsfh*>(c->result));
}

Result<NfsFile> NfsClient::open(const std::string& path, bool writable, Deadline deadline) {
  VMM_ASSIGN(auto c, run(CallKind::file, "opening " + host_ + ":" + export_ + path, deadline, [&](Call& call) {
    return nfs_open_async(ctx_, path.c_str(), writable ? O_RDWR : O_RDONLY, onComplete, &call);
  }));
  return NfsFile(shared_from_this(), static_cast<nfsfh*>(c->result));
}

Result<std::vector<std::string>> NfsClient::readPrefixes(const std::vector<std::string>& paths, size_t len,
                                                         Deadline deadline) {
  std::string what = "reading image headers on " + host_ + ":" + export_;
  VMM_ASSIGN(auto lk, lock(deadline, what));
  std::vector<std::string> out(paths.size());
  std::vector<Call*> opens(paths.size(), nullptr);
  std::vector<Call*> queued;
  for (size_t i = 0; i < paths.size(); ++i) {
    Call& c = newCall(CallKind::file);
    if (nfs_open_async(ctx_, paths[i].c_str(), O_RDONLY, onComplete, &c) != 0) {
      forget(c);
      continue;
    }
    opens[i] = &c;
    queued.push_back(&c);
  }
  Status opened = wait(queued, deadline, what);
  // Every file that did open is read (unless we are out of time) and closed.
  std::vector<nfsfh*> files(paths.size(), nullptr);
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!opens[i] || !opens[i]->done) continue;
    if (opens[i]->status >= 0) files[i] = static_cast<nfsfh*>(opens[i]->result);
    forget(*opens[i]);
  }
  std::vector<Call*> reads(paths.size(), nullptr);
  queued.clear();
  if (opened.ok()) {
    for (size_t i = 0; i < paths.size(); ++i) {
      if (!files[i]) continue;
      Call& c = newCall(CallKind::read, files[i]);
      if (nfs_pread_async(ctx_, files[i], 0, len, onComplete, &c) != 0) {
        forget(c);
        continue;
      }
      reads[i] = &c;
      queued.push_back(&c);
    }
  }
  Status read = opened.ok() ? wait(queued, deadline, what) : opened;
  for (size_t i = 0; i < paths.size(); ++i) {
    bool readPending = reads[i] && !reads[i]->done;
    if (reads[i] && !readPending) {
      if (reads[i]->status >= 0) out[i] = std::move(reads[i]->data);
      forget(*reads[i]);
    }
    if (!files[i]) continue;
    if (readPending) {
      MutexLock g(deferredMu_);
      deferredCloses_.push_back(files[i]);  // closed once the abandoned read completes
    } else {
      nfs_close_async(ctx_, files[i], ignoreResult, nullptr);
    }
  }
  if (!read.ok()) return read.takeError();
  return out;
}

Status NfsClient::unlink(const std::string& path, Deadline deadline) {
  return toStatus(run(CallKind::plain, "removing " + host_ + ":" + export_ + path, deadline, [&](Call& call) {
    return nfs_unlink_async(ctx_, path.c_str(), onComplete, &call);
  }));
}

Status NfsClient::rename(const std::string& from, const std::string& to, Deadline deadline) {
  std::string what = "renaming " + host_ + ":" + export_ + from + " to " + to;
  return toStatus(run(CallKind::plain, what, deadline, [&](Call& call) {
    return nfs_rename_async(ctx_, from.c_str(), to.c_str(), onComplete, &call);
  }));
}

Result<size_t> NfsClient::pread(nfsfh* fh, uint64_t offset, char* buf, size_t len, Deadline deadline) {
  VMM_ASSIGN(auto c, run(CallKind::read, "reading from " + host_ + ":" + export_, deadline, [&](Call& call) {
    return nfs_pread_async(ctx_, fh, offset, std::min<uint64_t>(len, readMax_), onComplete, &call);
  }, fh));
  size_t n = std::min(c->data.size(), len);
  std::memcpy(buf, c->data.data(), n);
  return n;
}

Status NfsClient::pwrite(nfsfh* fh, uint64_t offset, const char* buf, size_t len, Deadline deadline) {
  std::string what = "writing to " + host_ + ":" + export_;
  VMM_ASSIGN(auto c, run(CallKind::plain, what, deadline, [&](Call& call) {
    call.data.assign(buf, len);  // libnfs resends short writes from this buffer, maybe after we gave up
    return nfs_pwrite_async(ctx_, fh, offset, len, call.data.data(), onComplete, &call);
  }, fh));
  if (static_cast<size_t>(c->status) != len)
    return unavailable(what + ": short write (" + std::to_string(c->status) + " of " + std::to_string(len) + " bytes)");
  return {};
}

Status NfsClient::ftruncate(nfsfh* fh, uint64_t size, Deadline deadline) {
  return toStatus(run(CallKind::plain, "truncating a file on " + host_ + ":" + export_, deadline, [&](Call& call) {
    return nfs_ftruncate_async(ctx_, fh, size, onComplete, &call);
  }, fh));
}

Status NfsClient::fsync(nfsfh* fh, Deadline deadline) {
  return toStatus(run(CallKind::plain, "flushing a file on " + host_ + ":" + export_, deadline, [&](Call& call) {
    return nfs_fsync_async(ctx_, fh, onComplete, &call);
  }, fh));
}

Status NfsClient::close(nfsfh* fh, Deadline deadline) {
  std::string what = "closing a file on " + host_ + ":" + export_;
  auto lk = lock(deadline, what);
  if (!lk.ok()) {
    closeLater(fh);
    return lk.takeError();
  }
  // Calls that timed out may still use the handle: their answers come first.
  std::vector<Call*> busy;
  for (const auto& c : calls_)
    if (c->fh == fh && !c->done) busy.push_back(c.get());
  if (auto st = wait(busy, deadline, what); !st.ok()) {
    MutexLock g(deferredMu_);
    deferredCloses_.push_back(fh);  // closed by a later call once those answers arrived
    return st;
  }
  return toStatus(runLocked(std::move(*lk), CallKind::plain, what, deadline, [&](Call& call) {
    return nfs_close_async(ctx_, fh, onComplete, &call);
  }));
}

NfsFile& NfsFile::operator=(NfsFile&& o) noexcept {
  if (this != &o) {
    release();
    client_ = std::move(o.client_);
    fh_ = std::exchange(o.fh_, nullptr);
  }
  return *this;
}

void NfsFile::release() {
  if (fh_ && client_) client_->closeLater(fh_);
  fh_ = nullptr;
  client_.reset();
}

Result<size_t> NfsFile::pread(uint64_t offset, char* buf, size_t len, Deadline deadline) {
  if (!fh_) return internalError("read from a closed NFS file");
  return client_->pread(fh_, offset, buf, len, deadline);
}

Status NfsFile::pwrite(uint64_t offset, const char* buf, size_t len, Deadline deadline) {
  if (!fh_) return internalError("write to a closed NFS file");
  return client_->pwrite(fh_, offset, buf, len, deadline);
}

Status NfsFile::truncate(uint64_t size, Deadline deadline) {
  if (!fh_) return internalError("truncate of a closed NFS file");
  return client_->ftruncate(fh_, size, deadline);
}

Status NfsFile::fsync(Deadline deadline) {
  if (!fh_) return internalError("fsync of a closed NFS file");
  return client_->fsync(fh_, deadline);
}

Status NfsFile::close(Deadline deadline) {
  if (!fh_) return {};
  nfsfh* fh = std::exchange(fh_, nullptr);
  auto client = std::move(client_);
  return client->close(fh, deadline);
}

}  // namespace vmm::storage
