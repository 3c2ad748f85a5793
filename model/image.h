// Images: bootable disk images kept as volumes of an image pool, with metadata and a
// domain template. A domain launched from an image gets a linked clone of its disk (or a
// full copy) and the template's settings, overridden by what the caller asks for.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/domain.h"
#include "model/json_reader.h"

namespace vmm::model {

struct Image {
  std::string name;
  std::string pool;          // where its volumes live
  std::string volume;        // the disk
  DiskFormat format = DiskFormat::qcow2;
  uint64_t size = 0;         // virtual size of the disk
  std::string media = "disk"; // "disk", or "cdrom" for an installer/live ISO
  std::string kernel;        // optional volumes for direct kernel boot
  std::string initrd;
  std::string os;            // "linux", "debian-12", ...
  std::string arch = "x86_64";
  std::string defaultUser;
  std::string description;
  std::string source;        // where it came from: a file, a URL, "domain:NAME"
  std::string sha256;        // of the imported file's bytes as they arrived (lower-case hex)
  int64_t createdUs = 0;
  // Domain settings a launched domain starts from: memory, vcpus, boot.cmdline, disks' bus,
  // nics, guest_agent, machine... (a partial definition without name, uuid or disk sources).
  json domainTemplate = json::object();
};

json formatImage(const Image& i);
// A valid image name that cannot collide with the volumes launches make ("NAME-root.qcow2").
Status validateImageName(const std::string& name);
Result<Image> parseImageRecord(const json& j);

// What an import asks for.
struct ImageImportSpec {
  std::string name;
  std::string file;          // a host file (qcow2, raw or ISO), or
  std::string url;           // an http(s) URL reachable by the host
  std::string sha256;        // "" or the lower-case hex the file (or download) must hash to
  std::string kernelFile, initrdFile;  // optional, for direct kernel boot
  std::string os, arch = "x86_64", defaultUser, description;
  json domainTemplate = json::object();
  bool publicUrlOnly = false;  // set by the API for callers below admin, never from JSON
};
Result<ImageImportSpec> parseImageImportSpec(const json& j);

// A partial domain definition is valid when it parses once completed with a name.
Status validateDomainTemplate(const json& tmpl, bool imageHasKernel = false);
// The domain a template describes, as validateDomainTemplate checks it.
Result<Domain> domainTemplateProbe(const json& tmpl, bool imageHasKernel);

// The launch of a domain from an image (a disposable VM when ttl/remove are set).
struct LaunchSpec {
  std::string image;
  std::string name;          // default: IMAGE-XXXXXX
  std::optional<uint64_t> memory;
  std::optional<int> vcpus;
  std::vector<std::string> networks;  // a NIC on each vmm network
  bool fullCopy = false;     // an independent copy instead of a linked clone
  int64_t ttlMs = 0;         // 0 = no lease; else vmmd destroys and deletes it after this
  bool removeOnStop = false; // delete domain and volumes once it stops
  std::map<std::string, std::string> labels;
  json cloudInit;            // null, or the cloud-init seed spec (object)
  json customize;            // null, or offline customisation (object)
  bool start = true;
};
Result<LaunchSpec> parseLaunchSpec(const json& j);

}  // namespace vmm::model
