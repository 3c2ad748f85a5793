// First-boot configuration for cloud images: a cloud-init NoCloud seed (user-data, meta-data,
// network-config) rendered from a parameter struct, and written as an ISO with volume id
// "cidata" that the guest finds as a CD-ROM. Rendering is pure; every string is emitted as a
// YAML double-quoted scalar, so no value can add keys or list items.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"

namespace vmm::customize {

struct CloudUser {
  std::string name;                             // [a-z_][a-z0-9_.-]*, at most 32 characters
  std::vector<std::string> sshAuthorizedKeys;   // one key per entry, no line breaks
  std::string sudo;                             // e.g. "ALL=(ALL) NOPASSWD:ALL"; empty: none
  std::string shell;                            // empty: the distribution's default
  std::vector<std::string> groups;
  bool lockPassword = true;
};

struct CloudWriteFile {
  std::string path;                  // absolute
  std::string content;
  std::string permissions = "0644";  // octal
  std::string owner;                 // "user:group"; empty: cloud-init's default (root:root)
  bool append = false;
  bool defer = false;                // write after users/packages (for files owned by new users)
};

// One NIC of a generated network-config (version 2).
struct CloudInterface {
  std::string id;                       // key under "ethernets" and the name given to the NIC
  std::string macAddress;               // match by MAC if set (then set-name: id), else by name
  bool dhcp4 = false;
  bool dhcp6 = false;
  std::vector<std::string> addresses;   // "192.0.2.10/24", "2001:db8::10/64"
  std::string gateway4;
  std::string gateway6;
  std::vector<std::string> nameservers;
  std::vector<std::string> searchDomains;
};

struct CloudInitSpec {
  std::string instanceId;                          // required; a new id makes cloud-init run again
  std::string hostname;                            // RFC 1123 host name (may be a FQDN)
  bool includeDefaultUser = true;                  // keep the image's default user ("default")
  std::vector<std::string> sshAuthorizedKeys;      // for the default user
  std::vector<CloudUser> users;
  std::vector<std::string> packages;
  bool packageUpdate = false;
  std::vector<std::string> runcmd;                 // each entry run by /bin/sh -c
  std::vector<CloudWriteFile> writeFiles;
  std::string userDataOverride;                    // raw user-data; excludes every field above but
                                                   // instanceId and hostname (meta-data)
  std::vector<CloudInterface> interfaces;          // generated network-config
  std::string networkConfigOverride;               // raw network-config (v2 YAML); excludes interfaces
  std::map<std::string, std::string> extraMetaData;  // more meta-data keys ([A-Za-z0-9_-]+)
};

struct NoCloudSeed {
  std::string userData;       // starts with "#cloud-config" unless overridden
  std::string metaData;
  std::string networkConfig;  // empty: no network-config file (cloud-init falls back to DHCP)
};

// Validates the spec and renders the three files. invalid-argument names the bad field.
Result<NoCloudSeed> renderNoCloudSeed(const CloudInitSpec& spec);

// Renders the seed and writes it as an ISO 9660 image (Joliet + Rock Ridge, volume id "cidata")
// with genisoimage, or xorriso if genisoimage is missing. The image is built in a temporary
// file next to isoPath and renamed into place: on any failure isoPath is untouched and nothing
// is left behind.
Status writeSeedIso(const CloudInitSpec& spec, const std::string& isoPath, Deadline deadline);
Status writeSeedIso(const NoCloudSeed& seed, const std::string& isoPath, Deadline deadline);

// A YAML double-quoted scalar for any UTF-8 string (invalid UTF-8 is an error).
Result<std::string> yamlQuote(std::string_view s);

// An RFC 1123 host name (labels of letters, digits and '-'; a FQDN is fine).
bool isHostname(std::string_view h);

}  // namespace vmm::customize
