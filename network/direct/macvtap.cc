#include "network/direct/macvtap.h"

#include <net/if.h>
#include <net/if_arp.h>
#include <unistd.h>

#include <cctype>

#include "base/log.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "base/time_util.h"
#include "model/json_reader.h"
#include "model/names.h"
#include "network/direct/macvtap_link.h"
#include "network/link.h"

namespace vmm::net {

namespace {

constexpr unsigned kMinMtu = 68;

Status checkLinkName(const std::string& name, const std::string& what = "macvtap name") {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return invalidArgument(what + " " + quote(name) + " must have 1 to " + std::to_string(IFNAMSIZ - 1) + " characters");
  if (name == "." || name == "..") return invalidArgument(what + " " + quote(name) + " is not allowed");
  for (char c : name) {
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || !std::isprint(static_cast<unsigned char>(c)))
      return invalidArgument(what + " " + quote(name) + " contains a character not allowed in interface names");
  }
  return {};
}

Status checkMode(model::DirectMode mode) {
  switch (mode) {
    case model::DirectMode::vepa:
    case model::DirectMode::bridge:
    case model::DirectMode::private_:
    case model::DirectMode::passthrough: return {};
  }
  return invalidArgument("unknown direct mode " + std::to_string(static_cast<int>(mode)) + " (vepa, bridge, private, passthrough)");
}

std::string sysNet(const std::string& name, const std::string& attribute) { return "/sys/class/net/" + name + "/" + attribute; }

// The host interface must be an Ethernet link of its own: not loopback, not a bridge port
// (the bridge owns its frames; such a NIC should be type "bridge").
Result<int> checkLower(const std::string& lower) {
  if (lower.empty()) return invalidArgument("a direct NIC needs a host interface (device)");
  VMM_TRY(checkLinkName(lower, "host interface"));
  unsigned index = if_nametoindex(lower.c_str());
  if (index == 0) return notFound("host interface " + quote(lower) + " does not exist");
  auto type = parseUint(trim(fs::readFile(sysNet(lower, "type"), 64).valueOr("")));
  if (type && *type == ARPHRD_LOOPBACK) return invalidArgument("host interface " + quote(lower) + " is the loopback interface: macvtap needs an Ethernet interface");
  if (!type || *type != ARPHRD_ETHER) return invalidArgument("host interface " + quote(lower) + " is not an Ethernet interface");
  if (fs::exists(sysNet(lower, "brport"))) {
    char target[256] = {};
    ssize_t n = ::readlink(sysNet(lower, "master").c_str(), target, sizeof target - 1);
    std::string bridge = n > 0 ? fs::baseName(std::string(target, static_cast<size_t>(n))) : "a bridge";
    return invalidArgument("host interface " + quote(lower) + " is a port of bridge " + bridge +
                           ": attach the NIC to the bridge (type bridge) instead");
  }
  return static_cast<int>(index);
}

// The kernel allows a passthrough macvtap only as the single macvlan/macvtap of an interface.
Status checkPassthroughConflicts(const std::string& lower, int lowerIndex, model::DirectMode mode) {
  VMM_ASSIGN(auto stacked, linksStackedOn(lowerIndex));
  for (const auto& s : stacked) {
    if (s.modeKnown && s.mode == model::DirectMode::passthrough)
      return conflict("host interface " + quote(lower) + " is taken in passthrough mode by " + s.kind + " " + s.name);
  }
  if (mode == model::DirectMode::passthrough && !stacked.empty()) {
    std::vector<std::string> names;
    for (const auto& s : stacked) names.push_back(s.kind + " " + s.name);
    return conflict("passthrough needs host interface " + quote(lower) + " to itself; it already carries " + join(names, ", "));
  }
  return {};
}

Status checkMtu(const std::string& lower, unsigned mtu) {
  if (mtu == 0) return {};
  VMM_ASSIGN(unsigned lowerMtu, linkMtu(lower));
  if (mtu < kMinMtu || mtu > lowerMtu)
    return invalidArgument("MTU " + std::to_string(mtu) + " must be between " + std::to_string(kMinMtu) + " and the MTU of " + lower + " (" +
                           std::to_string(lowerMtu) + ")");
  return {};
}

}  // namespace

std::string macvtapNameFor(const std::string& guestMac) {
  std::string name = "mv";
  for (char c : guestMac)
    if (c != ':') name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

Result<MacvtapPort> createMacvtap(const MacvtapOptions& options) {
  VMM_TRY(checkLinkName(options.name));
  VMM_TRY(checkMode(options.mode));
  VMM_ASSIGN(std::string mac, model::normalizeMac(options.mac));
  VMM_ASSIGN(int lowerIndex, checkLower(options.lower));
  VMM_TRY(checkMtu(options.lower, options.mtu));
  if (linkExists(options.name) || if_nametoindex(options.name.c_str()) != 0)
    return conflict("a network interface named " + options.name + " already exists");
  VMM_TRY(checkPassthroughConflicts(options.lower, lowerIndex, options.mode));

  auto started = SteadyClock::now();
  MacvtapLinkSpec spec;
  spec.name = options.name;
  spec.lowerIndex = lowerIndex;
  spec.mode = options.mode;
  spec.mac = mac;
  spec.mtu = options.mtu;
  auto created = addMacvtapLink(spec);
  if (!created.ok()) {
    // The kernel says only "invalid argument" when a passthrough rule is broken by a racing
    // caller: look again to give the real reason.
    VMM_TRY(checkPassthroughConflicts(options.lower, lowerIndex, options.mode));
    return created.error();
  }
  Reverter revert;
  revert.add([name = options.name] { (void)deleteLinkByName(name); });

  MacvtapPort port;
  port.name = options.name;
  port.ifindex = *created;
  // In passthrough mode the kernel gives the macvtap the interface's MAC and ignores ours;
  // setting it afterwards sets both (the kernel restores the interface's own MAC on delete).
  if (options.mode == model::DirectMode::passthrough) VMM_TRY(setLinkMac(options.name, mac));

  VMM_ASSIGN(TapQueue queue, openMacvtapQueue(options.name, port.ifindex));
  port.fd = std::move(queue.fd);
  port.devicePath = queue.devicePath;
  port.nodeCreated = queue.nodeCreated;
  revert.success();
  log::debug("macvtap created", {{"name", port.name},
                                  {"lower", options.lower},
                                  {"mode", model::enumName(model::kDirectModes, options.mode)},
                                  {"device", port.devicePath},
                                  {"us", static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - started).count())}});
  return port;
}

Status deleteMacvtap(const std::string& name) {
  VMM_TRY(checkLinkName(name));
  auto kind = linkKind(name);
  if (!kind.ok()) return kind.error().code == ErrorCode::not_found ? Status{} : Status{kind.error()};
  if (*kind != "macvtap") return invalidArgument(name + " is a " + (kind->empty() ? std::string("plain") : *kind) + " link, not a macvtap: not deleting it");
  int ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  auto device = macvtapDeviceNumber(name, ifindex);
  auto deleted = deleteLinkByName(name);
  if (!deleted.ok() && deleted.error().code != ErrorCode::not_found) return deleted;
  // devtmpfs removed its own node with the link; one that is still there is ours.
  if (device.ok()) removeLeftoverTapNode(ifindex, *device);
  return {};
}

}  // namespace vmm::net
