// Unix-domain socket helpers.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "base/fs.h"
#include "base/result.h"
#include "base/time_util.h"

struct pollfd;

namespace vmm {

// poll() until something is ready or the deadline passes; a signal (EINTR) does not end the
// wait early. > 0: ready, 0: the deadline passed, < 0: an error (errno set).
int pollFor(pollfd* fds, size_t count, Deadline deadline);

// Binds and listens on `path` (replacing a stale socket file), chmod `mode`, and chgrp `gid`
// unless gid is -1. Non-blocking, close-on-exec.
Result<fs::UniqueFd> listenUnix(const std::string& path, mode_t mode, gid_t gid = static_cast<gid_t>(-1));
// Connects (blocking, close-on-exec) with a deadline.
Result<fs::UniqueFd> connectUnix(const std::string& path, Deadline deadline);

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups when it connected (SO_PEERGROUPS)
};
Result<PeerCred> peerCredentials(int fd);
// True if `uid` is root, or the peer's gid or one of its supplementary groups is `group`.
bool peerInGroup(const PeerCred& cred, gid_t group);

// One sendmsg of `len` bytes with descriptor `fd` attached (SCM_RIGHTS; the sender keeps its
// copy); the bytes sent, or -1 with errno. Only system calls: safe in a forked child.
ssize_t sendWithFd(int sock, const void* data, size_t len, int fd, int flags = MSG_NOSIGNAL);
// One recvmsg of at most `len` bytes and at most one descriptor, received close-on-exec into
// *fd (-1 when none or anything but exactly one came; extra ones are closed by the kernel's
// truncation). The bytes received, or -1 with errno. Only system calls: safe in a forked child.
ssize_t receiveWithFd(int sock, void* data, size_t len, int* fd);

Status setNonBlocking(int fd, bool on = true);
// Writes everything or fails; handles EINTR/EAGAIN with poll until the deadline.
Status writeAllFd(int fd, std::string_view data, Deadline deadline);

}  // namespace vmm
