#include "network/virtual/dnsmasq.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmm::net {

namespace {

bool sameProcess(const DnsmasqProcess& p) {
  auto start = processStartTime(p.pid);
  return start && (p.startTime == 0 || *start == p.startTime);
}

bool waitGone(pid_t pid, Deadline deadline) {
  while (processRunning(pid)) {
    if (deadline.expired()) return false;
    std::this_thread::sleep_for(Millis(5));
  }
  return true;
}

// The last lines of dnsmasq's log, for an error message.
std::string logTail(const std::string& logFile) {
  auto text = fs::readFile(logFile, 1 << 20);
  if (!text.ok()) return "";
  auto lines = split(*text, '\n', true);
  std::vector<std::string> tail;
  for (size_t i = lines.size() > 3 ? lines.size() - 3 : 0; i < lines.size(); ++i) tail.push_back(std::string(trim(lines[i])));
  return join(tail, "; ");
}

}  // namespace

std::vector<std::string> dnsmasqArgv(const DnsmasqConfig& c) {
  std::vector<std::string> argv = {
      c.binary,
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--bind-interfaces",
      "--interface=" + c.interface,
      "--except-interface=lo",
      "--listen-address=" + c.listenAddress,
      "--pid-file=" + c.pidFile,
      "--dhcp-leasefile=" + c.leaseFile,
      "--dhcp-hostsfile=" + c.hostsFile,
      "--dhcp-range=" + c.rangeStart + "," + c.rangeEnd + "," + c.netmask + "," + std::to_string(c.leaseSeconds),
      "--dhcp-authoritative",
      "--no-resolv",
      "--no-hosts",
      "--no-ping",
      "--log-facility=-",
  };
  // Static hosts known at start are arguments: dnsmasq reads those as root, before it drops to
  // "nobody" (which may not be able to traverse vmm's state directory to the hosts file).
  for (const auto& h : c.staticHosts) argv.push_back("--dhcp-host=" + h.mac + "," + h.ip + (h.name.empty() ? "" : "," + h.name));
  if (!c.advertiseRouter) argv.push_back("--dhcp-option=3");
  if (!c.domain.empty()) {
    argv.push_back("--domain=" + c.domain);
    argv.push_back("--local=/" + c.domain + "/");
  }
  return argv;
}

std::string dhcpHostsFileText(const std::vector<model::DhcpHost>& hosts) {
  std::string text;
  for (const auto& h : hosts) text += h.mac + "," + h.ip + (h.name.empty() ? "" : "," + h.name) + "\n";
  return text;
}

Result<DnsmasqProcess> startDnsmasq(const DnsmasqConfig& c, const std::vector<model::DhcpHost>& hosts, Deadline deadline) {
  if (c.binary.find('/') != std::string::npos && ::access(c.binary.c_str(), X_OK) != 0)
    return notFound("dnsmasq binary " + c.binary + " is not an executable file");
  // dnsmasq re-reads the hosts file as user nobody after SIGHUP: world-readable.
  VMM_TRY(fs::writeFileAtomic(c.hostsFile, dhcpHostsFileText(hosts), 0644));
  VMM_TRY(fs::removeFile(c.pidFile));
  fs::UniqueFd log(::open(c.logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!log.valid()) return systemError("cannot open " + c.logFile, errno);
  auto logStart = ::lseek(log.get(), 0, SEEK_END);
  SpawnOptions so;
  so.stdoutFd = log.get();
  so.newSession = true;
  DnsmasqConfig withHosts = c;
  withHosts.staticHosts = hosts;
  VMM_ASSIGN(pid_t pid, spawnProcess(dnsmasqArgv(withHosts), so));
  log.reset();

  DnsmasqProcess proc{pid, 0};
  auto failure = [&](const std::string& why) -> Error {
    (void)stopDnsmasq(proc, Deadline::after(Millis(2000)));
    std::string detail;
    if (auto text = fs::readFile(c.logFile, 1 << 20); text.ok() && logStart >= 0 && static_cast<size_t>(logStart) <= text->size()) {
      auto lines = split(text->substr(static_cast<size_t>(logStart)), '\n', true);
      for (auto& l : lines) detail += (detail.empty() ? "" : "; ") + std::string(trim(l));
    }
    if (detail.empty()) detail = logTail(c.logFile);
    return internalError("dnsmasq for " + c.interface + " " + why + (detail.empty() ? "" : ": " + detail));
  };
  while (true) {
    if (!processRunning(pid)) return failure("exited at start-up");
    auto pidText = fs::readFile(c.pidFile, 64);
    if (pidText.ok() && parseInt(trim(*pidText)) == pid) break;
    if (deadline.expired()) return failure("did not start before the deadline");
    std::this_thread::sleep_for(Millis(2));
  }
  proc.startTime = processStartTime(pid).value_or(0);
  return proc;
}

Status stopDnsmasq(const DnsmasqProcess& p, Deadline deadline) {
  if (p.pid <= 0 || !sameProcess(p)) return {};
  bool ourChild = processParent(p.pid) == ::getpid();
  if (processRunning(p.pid)) {
    ::kill(p.pid, SIGTERM);
    if (!waitGone(p.pid, deadline)) {
      ::kill(p.pid, SIGKILL);
      waitGone(p.pid, Deadline::after(Millis(2000)));
    }
  }
  // Our own child: collect its exit status so no zombie stays (through the daemon's reaper
  // when it runs one).
  if (ourChild) (void)ChildReaper::wait(p.pid, Deadline::after(Millis(2000)));
  if (processRunning(p.pid) && sameProcess(p)) return internalError("dnsmasq (pid " + std::to_string(p.pid) + ") did not exit");
  return {};
}

Status reloadDhcpHosts(const DnsmasqProcess& p, const std::string& hostsFile, const std::vector<model::DhcpHost>& hosts) {
  VMM_TRY(fs::writeFileAtomic(hostsFile, dhcpHostsFileText(hosts), 0644));
  if (p.pid <= 0 || !sameProcess(p) || !processRunning(p.pid)) return unavailable("dnsmasq is not running");
  if (::kill(p.pid, SIGHUP) != 0) return systemError("signalling dnsmasq", errno);
  return {};
}

std::vector<Lease> parseLeases(std::string_view text) {
  std::vector<Lease> out;
  for (const auto& line : split(text, '\n', true)) {
    auto f = split(trim(line), ' ', true);
    if (f.size() < 4 || f[0] == "duid") continue;
    auto expiry = parseInt(f[0]);
    if (!expiry || f[1].find(':') == std::string::npos || f[2].find('.') == std::string::npos) continue;
    Lease l;
    l.expiry = *expiry;
    l.mac = toLower(f[1]);
    l.ip = f[2];
    if (f[3] != "*") l.hostname = f[3];
    if (f.size() > 4 && f[4] != "*") l.clientId = f[4];
    out.push_back(std::move(l));
  }
  return out;
}

Result<std::vector<Lease>> readLeases(const std::string& leaseFile) {
  if (!fs::exists(leaseFile)) return std::vector<Lease>{};
  VMM_ASSIGN(auto text, fs::readFile(leaseFile, 16 << 20));
  return parseLeases(text);
}

}  // namespace vmm::net
