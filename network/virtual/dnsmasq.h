// dnsmasq as the DHCP/DNS server of one virtual network: command line, process, leases.
// dnsmasq runs in the foreground in its own session (it outlives a vmmd restart); vmm keeps
// its pid and start time and never looks it up by name.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/network.h"

namespace vmm::net {

struct DnsmasqConfig {
  std::string binary = "dnsmasq";
  std::string interface;      // the network's bridge
  std::string listenAddress;  // the gateway address
  std::string rangeStart, rangeEnd, netmask;
  int leaseSeconds = 3600;
  std::string domain;         // empty: no local domain
  bool advertiseRouter = true;  // false: no default route offered (isolated networks)
  std::string pidFile, leaseFile, hostsFile, logFile;
  std::vector<model::DhcpHost> staticHosts;  // given as arguments (see dnsmasqArgv)
};

// The argv (binary first). Static hosts known at start are arguments; hostsFile (re-read on
// SIGHUP) carries changes made while the network runs.
std::vector<std::string> dnsmasqArgv(const DnsmasqConfig& config);
// dhcp-hostsfile lines: "MAC,IP[,NAME]".
std::string dhcpHostsFileText(const std::vector<model::DhcpHost>& hosts);

struct DnsmasqProcess {
  pid_t pid = 0;
  uint64_t startTime = 0;  // field 22 of /proc/PID/stat: tells a reused pid apart
};

// Writes the hosts file, spawns dnsmasq and waits until it has bound its sockets (it writes
// the pid file then) or exited (its error, from the log file, is returned).
Result<DnsmasqProcess> startDnsmasq(const DnsmasqConfig& config, const std::vector<model::DhcpHost>& hosts,
                                    Deadline deadline);
// SIGTERM, then SIGKILL at the deadline. Succeeds if the process is gone already or the pid
// now belongs to another process (start time differs): that one is left alone.
Status stopDnsmasq(const DnsmasqProcess& process, Deadline deadline);
// Rewrites the hosts file and makes dnsmasq re-read it (SIGHUP).
Status reloadDhcpHosts(const DnsmasqProcess& process, const std::string& hostsFile,
                       const std::vector<model::DhcpHost>& hosts);

struct Lease {
  int64_t expiry = 0;  // Unix seconds; 0 = infinite
  std::string mac;
  std::string ip;
  std::string hostname;  // empty when the client sent none
  std::string clientId;  // empty when none
};

// Lease file lines: "<expiry> <mac> <ip> <hostname|*> <client-id|*>". IPv6 ("duid") lines
// and malformed lines are skipped.
std::vector<Lease> parseLeases(std::string_view text);
// A missing file is an empty list (no client has asked yet).
Result<std::vector<Lease>> readLeases(const std::string& leaseFile);

}  // namespace vmm::net
