#include "network/port/port_tc.h"

#include <algorithm>

#include "base/process.h"
#include "network/link.h"
#include "network/port/port_names.h"

namespace vmm::net {
namespace {

constexpr uint64_t kMinBurst = 2048;

std::string tbfArgs(const model::Bandwidth& bw, unsigned mtu) {
  uint64_t burst = bw.burst != 0 ? bw.burst : std::max<uint64_t>(bw.average / 8 / 50, 16384);
  std::string s = "tbf rate " + std::to_string(bw.average) + "bit burst " + std::to_string(burst) + " latency 50ms";
  if (bw.peak != 0) s += " peakrate " + std::to_string(bw.peak) + "bit mtu " + std::to_string(mtu + 64);
  return s;
}

std::string matchAll(const std::string& dev, const std::string& hook) {
  return "filter add dev " + dev + " " + hook + " prio 1 protocol all u32 match u32 0 0";
}

}  // namespace

bool needsTc(const model::PortProfile& p) { return p.inbound || p.outbound || !p.mirrorTo.empty(); }

Status checkBandwidth(const model::Bandwidth& bw, const std::string& what) {
  if (bw.average == 0) return invalidArgument(what + ".average must be more than 0 bits/s");
  if (bw.peak != 0 && bw.peak <= bw.average) return invalidArgument(what + ".peak must exceed the average (or be 0)");
  if (bw.burst != 0 && bw.burst < kMinBurst)
    return invalidArgument(what + ".burst must be at least " + std::to_string(kMinBurst) + " bytes (a full frame)");
  return {};
}

Status applyPortTc(const PortSpec& spec, Deadline deadline) {
  const auto& p = spec.profile;
  const std::string& dev = spec.ifname;
  std::string ifb = ifbNameFor(dev);
  unsigned mtu = linkMtu(dev).valueOr(1500);
  if (p.outbound) {
    std::string batch = "link add name " + ifb + " type ifb\n" + "link set dev " + ifb + " alias " +
                        std::string(kIfbAliasPrefix) + dev + "\n" + "link set dev " + ifb + " up\n";
    VMM_ASSIGN(auto r, runCommand({"ip", "-batch", "-"}, deadline, batch));
    if (!r.success()) return internalError("creating ifb device " + ifb + ": " + r.describe());
  }
  std::string tc;
  if (p.inbound) tc += "qdisc replace dev " + dev + " root handle 1: " + tbfArgs(*p.inbound, mtu) + "\n";
  if (p.outbound || !p.mirrorTo.empty()) tc += "qdisc add dev " + dev + " clsact\n";
  if (p.outbound) tc += "qdisc add dev " + ifb + " root handle 1: " + tbfArgs(*p.outbound, mtu) + "\n";
  std::string mirror = p.mirrorTo.empty() ? "" : " action mirred egress mirror dev " + p.mirrorTo + " pipe";
  if (p.outbound || !p.mirrorTo.empty()) {
    tc += matchAll(dev, "ingress") + mirror;
    if (p.outbound) tc += " action mirred egress redirect dev " + ifb;
    tc += "\n";
  }
  if (!p.mirrorTo.empty()) tc += matchAll(dev, "egress") + mirror + "\n";
  VMM_ASSIGN(auto r, runCommand({"tc", "-batch", "-"}, deadline, tc));
  if (!r.success()) return internalError("tc on " + dev + ": " + r.describe());
  return {};
}

Status removePortTc(const std::string& ifname, Deadline deadline) {
  if (linkExists(ifname)) {
    // Errors only mean "there was none"; the link keeps its default qdisc.
    VMM_ASSIGN(auto r, runCommand({"tc", "-force", "-batch", "-"}, deadline,
                           "qdisc del dev " + ifname + " root\nqdisc del dev " + ifname + " clsact\n"));
    (void)r;
  }
  std::string ifb = ifbNameFor(ifname);
  if (linkExists(ifb)) {
    VMM_ASSIGN(auto r, runCommand({"ip", "link", "del", "dev", ifb}, deadline));
    if (!r.success() && linkExists(ifb)) return internalError("deleting ifb device " + ifb + ": " + r.describe());
  }
  return {};
}

}  // namespace vmm::net
