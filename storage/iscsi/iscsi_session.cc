#include "storage/iscsi/iscsi_session.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>

extern "C" {
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
}

#include "base/log.h"

namespace vmm::storage::iscsi {

namespace {

constexpr int kUnitAttentionRetries = 5;

// libiscsi overwrites its error text while it tidies up after a failure: keep the original.
void complete(iscsi_context* ctx, int status, void* priv) {
  auto* c = static_cast<Session::Completion*>(priv);
  c->status = status;
  c->done = true;
  if (status != SCSI_STATUS_GOOD && status != SCSI_STATUS_CHECK_CONDITION) c->error = iscsi_get_error(ctx);
}

void onCommand(iscsi_context* ctx, int status, void* data, void* priv) {
  complete(ctx, status, priv);
  static_cast<Session::Completion*>(priv)->task = static_cast<scsi_task*>(data);
}

void onStatus(iscsi_context* ctx, int status, void*, void* priv) { complete(ctx, status, priv); }

void onDiscovery(iscsi_context* ctx, int status, void* data, void* priv) {
  complete(ctx, status, priv);
  auto* c = static_cast<Session::Completion*>(priv);
  if (status != SCSI_STATUS_GOOD) return;
  for (auto* a = static_cast<iscsi_discovery_address*>(data); a; a = a->next)
    if (a->target_name) c->targets.emplace_back(a->target_name);
}

std::string senseText(const scsi_task* t) {
  return std::string(scsi_sense_key_str(t->sense.key)) + " / " + scsi_sense_ascq_str(t->sense.ascq);
}

}  // namespace

std::string portalAddress(const std::string& host, int port) {
  bool ipv6 = host.find(':') != std::string::npos && host.front() != '[';
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Session::Session(SessionOptions options) : options_(std::move(options)) {}

Session::~Session() {
  // Cancels every outstanding PDU (their callbacks write into current_, still alive here).
  if (ctx_) iscsi_destroy_context(ctx_);
  if (current_.task) scsi_free_scsi_task(current_.task);
}

std::string Session::lastError() const {
  std::string e = !current_.error.empty() ? current_.error : ctx_ ? iscsi_get_error(ctx_) : "";
  if (e.find("Can not reconnect") != std::string::npos) e = "the connection to the target was lost";
  while (!e.empty() && (e.back() == '\n' || e.back() == '.')) e.pop_back();
  if (e.empty()) e = "unknown error";
  const std::string& s = options_.secret;
  if (!s.empty())
    for (size_t at = e.find(s); at != std::string::npos; at = e.find(s, at)) e.replace(at, s.size(), "***");
  return e;
}

Status Session::wait(const std::string& what, Deadline deadline) {
  std::string where = " (" + portalAddress(options_.host, options_.port) + ")";
  while (!current_.done) {
    if (deadline.expired()) {
      broken_ = true;
      return timeoutError("iSCSI " + what + where + ": no answer before the deadline");
    }
    pollfd pfd{iscsi_get_fd(ctx_), static_cast<short>(iscsi_which_events(ctx_)), 0};
    // No events wanted (libiscsi between reconnect attempts): look again shortly.
    int timeout = pfd.events ? deadline.pollTimeoutMs() : 100;
    if (timeout < 0 || timeout > 1000) timeout = 1000;
    int rc = ::poll(&pfd, 1, timeout);
    if (rc < 0) {
      if (errno == EINTR) continue;
      broken_ = true;
      return systemError("iSCSI " + what + ": poll", errno);
    }
    if (iscsi_service(ctx_, pfd.revents) < 0 && !current_.done) {
      broken_ = true;
      return unavailable("iSCSI " + what + where + ": " + lastError());
    }
  }
  return {};
}

void Session::startRequest() {
  if (current_.task) scsi_free_scsi_task(current_.task);
  current_ = Completion{};
}

Result<std::unique_ptr<Session>> Session::open(const SessionOptions& o, bool discovery, Deadline deadline) {
  if (o.host.empty()) return invalidArgument("iSCSI: no portal host");
  if (o.initiator.empty()) return invalidArgument("iSCSI: no initiator name");
  if (!discovery && o.target.empty()) return invalidArgument("iSCSI: no target IQN");
  std::unique_ptr<Session> s(new Session(o));
  s->ctx_ = iscsi_create_context(o.initiator.c_str());
  if (!s->ctx_) return internalError("iSCSI: cannot create a context");
  iscsi_context* ctx = s->ctx_;
  iscsi_set_noautoreconnect(ctx, 1);  // a dropped connection is an error for the caller, not a silent retry
  iscsi_set_session_type(ctx, discovery ? ISCSI_SESSION_DISCOVERY : ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
  if (!discovery && iscsi_set_targetname(ctx, o.target.c_str()) != 0)
    return invalidArgument("iSCSI: bad target name " + o.target + ": " + s->lastError());
  if (!o.username.empty() && iscsi_set_initiator_username_pwd(ctx, o.username.c_str(), o.secret.c_str()) != 0)
    return invalidArgument("iSCSI: bad CHAP user name: " + s->lastError());

  std::string portal = portalAddress(o.host, o.port);
  s->startRequest();
  if (iscsi_connect_async(ctx, portal.c_str(), onStatus, &s->current_) != 0)
    return unavailable("iSCSI: cannot connect to " + portal + ": " + s->lastError());
  VMM_TRY(s->wait("connect", deadline));
  if (s->current_.status != SCSI_STATUS_GOOD)
    return unavailable("iSCSI: cannot connect to " + portal + ": " + s->lastError());

  s->startRequest();
  if (iscsi_login_async(ctx, onStatus, &s->current_) != 0) return unavailable("iSCSI login at " + portal + ": " + s->lastError());
  VMM_TRY(s->wait("login", deadline));
  if (s->current_.status != SCSI_STATUS_GOOD) {
    std::string e = s->lastError();
    std::string subject = discovery ? "discovery at " + portal : "login to " + o.target + " at " + portal;
    if (e.find("Authentication failure") != std::string::npos)
      return permissionDenied("iSCSI " + subject + ": CHAP authentication failed" +
                              (o.username.empty() ? " (the target requires a username and secret)" : " for user " + o.username));
    if (e.find("Authorization failure") != std::string::npos)
      return permissionDenied("iSCSI " + subject + ": initiator " + o.initiator + " is not allowed by the target's ACL");
    if (e.find("Target not found") != std::string::npos || e.find("Target removed") != std::string::npos)
      return notFound("iSCSI " + subject + ": no such target");
    return unavailable("iSCSI " + subject + ": " + e);
  }
  s->loggedIn_ = true;
  return s;
}

Result<std::unique_ptr<Session>> Session::login(const SessionOptions& options, Deadline deadline) {
  return open(options, false, deadline);
}

Result<std::vector<std::string>> Session::discover(const SessionOptions& options, Deadline deadline) {
  VMM_ASSIGN(auto s, open(options, true, deadline));
  s->startRequest();
  if (iscsi_discovery_async(s->ctx_, onDiscovery, &s->current_) != 0) return unavailable("iSCSI discovery: " + s->lastError());
  VMM_TRY(s->wait("discovery", deadline));
  if (s->current_.status != SCSI_STATUS_GOOD) return unavailable("iSCSI discovery: " + s->lastError());
  std::vector<std::string> targets = std::move(s->current_.targets);
  (void)s->logout(deadline);
  return targets;
}

template <typename Submit, typename OnGood>
Status Session::command(const std::string& what, Submit submit, OnGood onGood, Deadline deadline) {
  if (broken_) return unavailable("iSCSI " + what + ": the session broke earlier; reconnect");
  if (!loggedIn_) return unavailable("iSCSI " + what + ": not logged in");
  for (int attempt = 0;; ++attempt) {
    startRequest();
    scsi_task* sent = submit();
    if (!sent) {
      broken_ = true;
      return unavailable("iSCSI " + what + ": " + lastError());
    }
    Status w = wait(what, deadline);
    if (!w.ok()) {
      // Calls back at once (CANCELLED) so nothing refers to the caller's buffers afterwards.
      if (!current_.done) iscsi_scsi_cancel_task(ctx_, sent);
      if (!current_.task) scsi_free_scsi_task(sent);
      return w;
    }
    if (!current_.task) current_.task = sent;
    scsi_task* t = current_.task;
    if (current_.status == SCSI_STATUS_GOOD) return onGood(t);
    if (current_.status == SCSI_STATUS_CHECK_CONDITION && t->sense.key == SCSI_SENSE_UNIT_ATTENTION &&
        attempt < kUnitAttentionRetries) {
      // Bus reset / power on reported after login: the command itself was not run.
      log::debug("iSCSI unit attention, retrying", {{"command", what}, {"sense", senseText(t)}});
      continue;
    }
    if (current_.status == SCSI_STATUS_CHECK_CONDITION)
      return unavailable("iSCSI " + what + " on " + options_.target + ": " + senseText(t));
    if (current_.status == SCSI_STATUS_CANCELLED) return cancelledError("iSCSI " + what + ": cancelled");
    broken_ = true;
    return unavailable("iSCSI " + what + " on " + options_.target + ": " + lastError());
  }
}

Result<std::vector<int>> Session::reportLuns(Deadline deadline) {
  std::vector<int> luns;
  VMM_TRY(command(
      "REPORT LUNS", [&] { return iscsi_reportluns_task(ctx_, 0, 16384, onCommand, &current_); },
      [&](scsi_task* t) -> Status {
        auto* list = static_cast<scsi_reportluns_list*>(scsi_datain_unmarshall(t));
        if (!list) return unavailable("iSCSI REPORT LUNS: unreadable answer");
        for (uint32_t i = 0; i < list->num; ++i) luns.push_back(list->luns[i] & 0x3fff);  // flat/peripheral addressing
        return {};
      },
      deadline));
  std::sort(luns.begin(), luns.end());
  return luns;
}

Result<bool> Session::isDisk(int lun, Deadline deadline) {
  bool disk = false;
  VMM_TRY(command(
      "INQUIRY", [&] { return iscsi_inquiry_task(ctx_, lun, 0, 0, 255, onCommand, &current_); },
      [&](scsi_task* t) -> Status {
        auto* inq = static_cast<scsi_inquiry_standard*>(scsi_datain_unmarshall(t));
        if (!inq) return unavailable("iSCSI INQUIRY: unreadable answer");
        disk = inq->qualifier == SCSI_INQUIRY_PERIPHERAL_QUALIFIER_CONNECTED &&
               inq->device_type == SCSI_INQUIRY_PERIPHERAL_DEVICE_TYPE_DIRECT_ACCESS;
        return {};
      },
      deadline));
  return disk;
}

Result<LunCapacity> Session::readCapacity(int lun, Deadline deadline) {
  LunCapacity cap;
  VMM_TRY(command(
      "READ CAPACITY(16)", [&] { return iscsi_readcapacity16_task(ctx_, lun, onCommand, &current_); },
      [&](scsi_task* t) -> Status {
        auto* rc = static_cast<scsi_readcapacity16*>(scsi_datain_unmarshall(t));
        if (!rc || rc->block_length == 0) return unavailable("iSCSI READ CAPACITY(16): unreadable answer");
        cap.blockSize = rc->block_length;
        cap.blocks = rc->returned_lba + 1;
        return {};
      },
      deadline));
  return cap;
}

Status Session::read(int lun, uint64_t lba, uint32_t blocks, uint32_t blockSize, char* buf, Deadline deadline) {
  uint32_t len = blocks * blockSize;
  scsi_iovec iov{buf, len};
  return command(
      "READ(16)",
      [&] {
        return iscsi_read16_iov_task(ctx_, lun, lba, len, static_cast<int>(blockSize), 0, 0, 0, 0, 0, onCommand, &current_,
                                     &iov, 1);
      },
      [&](scsi_task* t) -> Status {
        if (t->residual_status == SCSI_RESIDUAL_UNDERFLOW && t->residual > 0)
          return unavailable("iSCSI READ(16): the target returned " + std::to_string(len - t->residual) + " of " +
                             std::to_string(len) + " bytes");
        return {};
      },
      deadline);
}

Status Session::write(int lun, uint64_t lba, uint32_t blocks, uint32_t blockSize, const char* buf, Deadline deadline) {
  uint32_t len = blocks * blockSize;
  // libiscsi only reads from the buffer; its API lacks the const.
  auto* data = reinterpret_cast<unsigned char*>(const_cast<char*>(buf));
  return command(
      "WRITE(16)",
      [&] {
        return iscsi_write16_task(ctx_, lun, lba, data, len, static_cast<int>(blockSize), 0, 0, 0, 0, 0, onCommand,
                                  &current_);
      },
      [](scsi_task*) -> Status { return {}; }, deadline);
}

Status Session::synchronizeCache(int lun, Deadline deadline) {
  return command(
      "SYNCHRONIZE CACHE(16)",
      [&] { return iscsi_synchronizecache16_task(ctx_, lun, 0, 0, 0, 0, onCommand, &current_); },
      [](scsi_task*) -> Status { return {}; }, deadline);
}

Status Session::logout(Deadline deadline) {
  if (!loggedIn_ || broken_) return {};
  loggedIn_ = false;
  startRequest();
  if (iscsi_logout_async(ctx_, onStatus, &current_) != 0) return unavailable("iSCSI logout: " + lastError());
  VMM_TRY(wait("logout", deadline));
  if (current_.status != SCSI_STATUS_GOOD) return unavailable("iSCSI logout: " + lastError());
  return {};
}

}  // namespace vmm::storage::iscsi
