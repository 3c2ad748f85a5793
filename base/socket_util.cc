#include "base/socket_util.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/strings.h"

namespace vmm {

static Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return invalidArgument("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Result<fs::UniqueFd> listenUnix(const std::string& path, mode_t mode, gid_t gid) {
  VMM_ASSIGN(auto addr, unixAddress(path));
  fs::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return systemError("socket", errno);
  // A socket file left by a previous (killed) instance: remove it if nobody answers on it.
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return conflict(path + " exists and is not a socket");
    auto probe = connectUnix(path, Deadline::after(Millis(200)));
    if (probe.ok()) return conflict("another process is already listening on " + path);
    ::unlink(path.c_str());
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return systemError("cannot bind " + path, errno);
  if (::chmod(path.c_str(), mode) != 0) return systemError("chmod " + path, errno);
  if (gid != static_cast<gid_t>(-1) && ::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0)
    return systemError("chgrp " + path, errno);
  if (::listen(fd.get(), 128) != 0) return systemError("listen " + path, errno);
  return fd;
}

int pollFor(pollfd* fds, size_t count, Deadline deadline) {
  while (true) {
    int rc = ::poll(fds, static_cast<nfds_t>(count), deadline.pollTimeoutMs());
    if (rc >= 0 || errno != EINTR) return rc;
    if (deadline.expired()) return 0;
  }
}

Result<fs::UniqueFd> connectUnix(const std::string& path, Deadline deadline) {
  VMM_ASSIGN(auto addr, unixAddress(path));
  fs::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return systemError("socket", errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) return systemError("cannot connect to " + path, errno);
    pollfd p{fd.get(), POLLOUT, 0};
    int rc = pollFor(&p, 1, deadline);
    if (rc == 0) return timeoutError("timed out connecting to " + path);
    if (rc < 0) return systemError("cannot connect to " + path, errno);
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return systemError("cannot connect to " + path, err);
  }
  VMM_TRY(setNonBlocking(fd.get(), false));
  return fd;
}

Result<PeerCred> peerCredentials(int fd) {
  struct ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return systemError("SO_PEERCRED", errno);
  PeerCred out{cred.pid, cred.uid, cred.gid, {}};
  // The supplementary groups the peer had when it connected, from the kernel (not /proc, where
  // a reused pid would answer for another process). ERANGE tells the size needed.
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 3; ++attempt) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      out.groups = std::move(groups);
      return out;
    }
    if (errno != ERANGE) break;  // a kernel without SO_PEERGROUPS (before 4.13): uid and gid only
    groups.resize(bytes / sizeof(gid_t) + 1);
  }
  return out;
}

bool peerInGroup(const PeerCred& cred, gid_t group) {
  if (cred.uid == 0) return true;
  if (group == static_cast<gid_t>(-1)) return false;
  if (cred.gid == group) return true;
  return std::find(cred.groups.begin(), cred.groups.end(), group) != cred.groups.end();
}

Status setNonBlocking(int fd, bool on) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return systemError("fcntl", errno);
  fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, fl) != 0) return systemError("fcntl", errno);
  return {};
}

Status writeAllFd(int fd, std::string_view data, Deadline deadline) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data.data() + off, data.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return systemError("write", errno);
    pollfd p{fd, POLLOUT, 0};
    int rc = pollFor(&p, 1, deadline);
    if (rc == 0) return timeoutError("write timed out");
    if (rc < 0) return systemError("poll", errno);
  }
  return {};
}

ssize_t sendWithFd(int sock, const void* data, size_t len, int fd, int flags) {
  iovec iov{const_cast<void*>(data), len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return ::sendmsg(sock, &msg, flags);
}

ssize_t receiveWithFd(int sock, void* data, size_t len, int* fd) {
  *fd = -1;
  iovec iov{data, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return n;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c != nullptr && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
    std::memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return n;
}

}  // namespace vmm
