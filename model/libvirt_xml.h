// libvirt domain XML <-> the domain model. No I/O.
//
// Import maps every element and attribute the model has a field for, removing it from the
// parsed tree as it goes; what is left (features, clock, video, controllers, unknown
// elements, unmodelled attributes of modelled devices ...) is kept verbatim in
// Domain::extensions["libvirt"] and listed in the warnings, never dropped. Export writes the
// model as libvirt XML and merges that remainder back at its place, so
// import -> export -> import gives the same definition.
//
// Parsing is hardened: at most kMaxBytes, at most kMaxDepth levels, and any DOCTYPE is
// refused (pugixml never loads external DTDs nor expands user entities; refusing the DOCTYPE
// makes entity tricks a clear error instead of literal text).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "model/domain.h"

namespace vmm::model {

struct LibvirtXmlLimits {
  static constexpr size_t kMaxBytes = 4 << 20;
  static constexpr int kMaxDepth = 48;
};

struct LibvirtImport {
  Domain domain;
  std::vector<std::string> kept;      // paths kept verbatim but not applied: "features", "devices/video"
  std::vector<std::string> warnings;  // sentences for the user (one of them lists `kept`)
};

// True when the first non-blank character is '<' (a definition file in XML, not JSON).
bool looksLikeXml(std::string_view text);

Result<LibvirtImport> importLibvirtXml(std::string_view xml);

// withSecrets=false leaves graphics passwords out, as `virsh dumpxml` does without
// --security-info.
Result<std::string> exportLibvirtXml(const Domain& d, bool withSecrets = false);

}  // namespace vmm::model
