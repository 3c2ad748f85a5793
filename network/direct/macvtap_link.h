// macvtap links through rtnetlink (libnl-route): create, delete, and list the macvlan/macvtap
// links stacked on a host interface. Internal to network/direct/.
//
// rtnetlink requests are handled synchronously by the kernel inside sendmsg(); they never wait
// on another process, so a receive timeout is the only deadline they need.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "model/domain.h"

namespace vmm::net {

struct MacvtapLinkSpec {
  std::string name;
  int lowerIndex = 0;
  model::DirectMode mode = model::DirectMode::vepa;
  std::string mac;  // "52:54:00:..."; the kernel ignores it in passthrough mode
  unsigned mtu = 0; // 0: the lower's
};

// Creates the link (never replaces an existing one: conflict if the name is taken) and sets
// it up. Returns its ifindex.
Result<int> addMacvtapLink(const MacvtapLinkSpec& spec);

// A macvlan or macvtap link stacked on some lower interface.
struct StackedLink {
  std::string name;
  std::string kind;  // "macvtap" | "macvlan"
  model::DirectMode mode = model::DirectMode::vepa;
  bool modeKnown = false;  // false for modes vmm does not use (e.g. "source")
};
Result<std::vector<StackedLink>> linksStackedOn(int lowerIndex);

// The kind of a link ("macvtap", "veth", ...; "" for plain devices), notFound if absent.
Result<std::string> linkKind(const std::string& name);

// Deletes a link by name; notFound if there is none.
Status deleteLinkByName(const std::string& name);

}  // namespace vmm::net
