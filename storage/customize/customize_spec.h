// What an offline customisation of a disk image does, and the JSON the vmm-customize helper
// reads on stdin (and answers on stdout). Shared by the daemon side (guestfs_customizer) and
// the helper; no libguestfs here.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace vmm::customize {

struct InjectedFile {
  std::string path;       // absolute path inside the image; parent directories are created
  std::string content;    // bytes (any, base64 on the wire)
  uint32_t mode = 0644;
  // "" (root:root), "UID:GID" numbers, or "user[:group]" names looked up in the image's
  // /etc/passwd and /etc/group.
  std::string owner;
};

struct AuthorizedKeys {
  std::string user = "root";       // home directory from the image's /etc/passwd
  std::vector<std::string> keys;   // appended to ~/.ssh/authorized_keys unless already there
};

struct CustomizeSpec {
  std::string format;                  // "raw" or "qcow2", as recorded; required to customise (never detected)
  std::vector<InjectedFile> files;     // applied in this order, then keys, hostname, commands
  std::vector<AuthorizedKeys> sshKeys;
  std::string hostname;                // written to /etc/hostname (and /etc/hosts' 127.0.1.1 line)
  std::vector<std::string> commands;   // each run as /bin/sh -c inside the image (needs a shell)
};

struct CustomizeReport {
  std::string rootDevice;        // filesystem mounted as / ("/dev/sda1")
  std::string osType;            // from inspection ("linux"); "" when inspection found nothing
  std::string distro;            // "debian", ...
  int64_t launchMillis = 0;      // appliance start-up (guestfs_launch)
  int64_t totalMillis = 0;
  std::vector<std::string> commandOutputs;  // stdout of each command, in order
};

// Checks the spec without touching any image (paths absolute, modes, key lines, hostname).
Status validateCustomizeSpec(const CustomizeSpec& spec);

// The helper's stdin: {"image": ..., "format": ..., "files": [...], ...}.
std::string customizeRequestToJson(const std::string& imagePath, const CustomizeSpec& spec);
Result<std::pair<std::string, CustomizeSpec>> customizeRequestFromJson(std::string_view json);

// The helper's stdout: {"ok": true, "report": {...}} or {"ok": false, "code": ..., "error": ...}.
std::string customizeReplyToJson(const Result<CustomizeReport>& result);
Result<CustomizeReport> customizeReplyFromJson(std::string_view json);

}  // namespace vmm::customize
