// What the daemon provides to hypervisor drivers: disk sources resolved to paths, and the
// host side of NICs (taps on bridges). Storage pools and managed networks plug in here.
#pragma once

#include "daemon/network_service.h"
#include "daemon/pool_service.h"
#include "drivers/driver.h"

namespace vmm {

class DaemonHostServices final : public drivers::HostServices {
 public:
  DaemonHostServices(PoolService& pools, NetworkService& networks, std::string stateDir)
      : pools_(pools), networks_(networks), stateDir_(std::move(stateDir)) {}
  Result<drivers::ResolvedDisk> resolveDisk(const model::Disk& disk) override;
  Status runQemuImg(const std::vector<std::string>& args, const drivers::QemuImgAccess& access, Deadline deadline) override;
  std::pair<std::string, std::string> recordedBacking(const std::string& file) override;
  Result<drivers::PreparedPort> plugNic(const model::Domain& dom, const model::Nic& nic, const std::string& kind) override;
  void unplugNic(const model::Domain& dom, const model::Nic& nic, const std::string& ifname) override;
  Result<std::string> attachPort(const model::Domain& dom, const model::Nic& nic, const std::string& ifname) override;

 private:
  // The layers under a qcow2 disk given by path, each one vmm vouches for (host_services.cc).
  Status pinPathChain(drivers::ResolvedDisk& top);
  Result<std::string> bridgeOf(const model::Nic& nic) const;
  void releasePort(const model::Nic& nic, const std::string& ifname);
  PoolService& pools_;
  NetworkService& networks_;
  const std::string stateDir_;
};

}  // namespace vmm
