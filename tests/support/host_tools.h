// Host tools and privileges the tests need, probed the way vmmd finds tools (findExecutable:
// PATH, then /usr/local/sbin, /usr/sbin, /sbin), so a CI user whose PATH lacks /usr/sbin still
// runs the iSCSI, NFS and LVM tests instead of skipping them.
//
// VMM_TEST_PRETEND_MISSING=tool[,tool...] hides tools from these probes (only from the probes:
// it is a test of the skip path, not a way to run without them). The meta tests use it to prove
// that a missing dependency fails a strict run and names the tool.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "base/process.h"
#include "base/strings.h"

namespace vmm::testutil {

inline bool pretendMissing(const std::string& tool) {
  const char* v = std::getenv("VMM_TEST_PRETEND_MISSING");
  if (!v) return false;
  for (const auto& t : split(v, ',', true))
    if (t == tool) return true;
  return false;
}

// Full path of `tool`, or "" when it is not installed (or pretended missing).
inline std::string findTool(const std::string& tool) { return pretendMissing(tool) ? "" : findExecutable(tool); }
inline bool haveTool(const std::string& tool) { return !findTool(tool).empty(); }

// "" when every tool is there, otherwise what is missing: "tgtd, tgtadm (package tgt)".
inline std::string missingTools(const std::vector<std::string>& tools, const std::string& package) {
  std::vector<std::string> missing;
  for (const auto& t : tools)
    if (!haveTool(t)) missing.push_back(t);
  if (missing.empty()) return "";
  return join(missing, ", ") + " (package " + package + ", looked for in PATH, /usr/local/sbin, /usr/sbin, /sbin)";
}

// "" when qemu-img can load QEMU's block driver for `protocol` (iscsi, nfs: loadable modules in
// Debian's qemu-block-extra). Asked of a port where nothing listens: a missing driver answers
// "Unknown protocol", a present one fails to connect.
inline std::string missingQemuBlockDriver(const std::string& protocol) {
  std::string what = "QEMU's " + protocol + " block driver (package qemu-block-extra)";
  if (pretendMissing("qemu-block-" + protocol)) return what;
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(10000));
  auto r = runCommand({"qemu-img", "info", protocol + "://127.0.0.1:1/iqn.2024-01.io.vmm:probe/0"}, opts);
  if (!r.ok()) return "qemu-img (package qemu-utils): " + r.error().message;
  return r->err.find("Unknown protocol") == std::string::npos ? "" : what;
}

// "" as root, otherwise "root (why)".
inline std::string missingRoot(const std::string& why) {
  return ::geteuid() == 0 && !pretendMissing("root") ? "" : "root (" + why + ")";
}

}  // namespace vmm::testutil
