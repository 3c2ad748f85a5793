// Bandwidth limits and mirroring of one port with tc (htb/tbf/ifb/clsact/u32/mirred only: this
// kernel has no police, matchall, flower or sfq).
//   inbound  (towards the guest = egress of the port): tbf as the port's root qdisc.
//   outbound (from the guest = ingress of the port): clsact, u32 match-all on ingress with
//            `mirred egress redirect` to the port's ifb device (ifbNameFor), tbf on the ifb.
//   mirrorTo: u32 match-all + `mirred egress mirror` on clsact ingress and egress (on ingress
//            the mirror action comes before the redirect to the ifb, in the same filter).
// Rates are bits/s; burst in bytes (0: 20 ms worth of the rate, at least 16 KiB); peak, when
// set, must exceed the average and bounds short-term rate (tbf peakrate).
#pragma once

#include <string>

#include "base/result.h"
#include "base/time_util.h"
#include "network/port/port_profile.h"

namespace vmm::net {

bool needsTc(const model::PortProfile& profile);
Status checkBandwidth(const model::Bandwidth& bw, const std::string& what);

// Creates the ifb (when outbound is limited) and installs qdiscs and filters. Not atomic by
// itself: the caller undoes a failure with removePortTc.
Status applyPortTc(const PortSpec& spec, Deadline deadline);
// Deletes the port's root and clsact qdiscs (when the link exists) and its ifb device.
Status removePortTc(const std::string& ifname, Deadline deadline);

}  // namespace vmm::net
