// vmmd's configuration: embedded defaults, then the config file (/etc/vmm/vmmd.toml when
// present, or --config), then command-line flags. Unknown keys are errors.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"

namespace vmm {

// Every driver of drivers/registry.h, the default of [daemon] drivers.
std::vector<std::string> defaultDrivers();

struct Config {
  std::string configFile;     // what was loaded ("" = none)
  std::string stateDir;       // sqlite database, console logs, saved states, the default pool
  std::string runDir;         // sockets and pid files
  std::string logLevel = "info";
  std::string logFormat = "logfmt";
  std::string logFile;        // "" = stderr

  std::string socketPath;     // read-write JSON-RPC socket
  std::string roSocketPath;   // read-only JSON-RPC socket
  std::string socketGroup;    // members of this group may use the read-write socket (admins)
  std::string operatorGroup;  // members of this group use the read-write socket as operators
  std::string operatorProject;  // ...bound to this project ("": they pick one per call)
  // Who may use the read-only socket: "" root only (0660 root:root), a group's members
  // (0660 root:GROUP), or "*" every local user (0666). It shows every domain, volume and
  // network, so it is closed by default.
  std::string roSocketGroup;
  size_t maxRequestBytes = 4 << 20;

  std::string httpListen = "127.0.0.1:8470";  // "" disables HTTP
  std::string tlsCert, tlsKey;
  std::vector<std::string> httpAllowedHosts;  // Host header names; empty: loopback names on loopback
  bool httpAllowPlaintext = false;            // plain HTTP on a non-loopback address
  int httpThreads = 16;
  Millis httpHeaderTimeout = Millis(10000);  // a request head (and TLS handshake) must arrive within this
  Millis httpIdleTimeout = Millis(15000);    // a kept-alive connection may wait this long for its next request

  std::vector<std::string> drivers = defaultDrivers();
  bool syncFull = true;       // fsync every commit
  bool defaultPool = true;    // create the dir pool "default" under the state dir when no pool exists
  Millis storageIoTimeout = Millis(30000);  // each call to a storage server or tool
  uint64_t unpackMaxBytes = uint64_t{64} << 30;  // files a rootfs tarball may unpack, in bytes
  size_t unpackMaxFiles = 2000000;              // and in members
  bool defaultNetwork = true; // define (and autostart) the NAT network "default" when no network exists
  std::string imagePool = "images";  // the image store; created as a dir pool under the state dir
  std::string customizeHelper;  // vmm-customize; "" = looked for next to vmmd
  std::string guestfsEnv;       // the appliance settings scripts/setup-guestfs.sh writes; "" = looked for
  std::string imageCaFile;      // PEM CA certificates for https image downloads; "" = the system's
  bool imageAllowHttp = false;  // image downloads over plain http:// (no integrity); https -> http redirects never
  uint64_t capacityMemory = 0;  // memory launches may use in all; 0 = the host's memory minus 1 GiB
  int64_t capacityVcpus = 0;    // vCPUs launches may use in all; 0 = 8 per host CPU
  int64_t containerPidsMax = 4096;  // pids.max of a container without limits.pids; 0 = none
  // Host ids that unprivileged containers get 65536-id ranges from ("START:COUNT"); "" = root's
  // /etc/subuid entry, else 1000000:1000000000.
  std::string containerIdmapRange;
  // Each QEMU runs as a uid (and gid) of its own, from this range, with no capabilities
  // ("START:COUNT"); false runs QEMU as root, as vmmd is (drivers/qemu/README.md).
  bool qemuUnprivileged = true;
  std::string qemuUidRange = "1001000000:65536";

  size_t operationsKeep = 1000;
  Millis operationsMaxAge = Millis(24LL * 3600 * 1000);
  size_t eventQueue = 4096;
  Millis jobWait = Millis(30000);
  Millis shutdownTimeout = Millis(60000);

  std::string dbPath() const { return stateDir + "/vmm.db"; }
};

// [containers] idmap_range resolved: {start, count}.
Result<std::pair<uint64_t, uint64_t>> containerIdmapRange(const Config& config, const std::string& subuidFile = "/etc/subuid");

// [qemu] uid_range resolved: {start, count}; it must not meet the containers' range.
Result<std::pair<uint64_t, uint64_t>> qemuUidRange(const Config& config, const std::string& subuidFile = "/etc/subuid");

// Defaults for the current user: root uses /var/lib/vmm and /run/vmm.
Config defaultConfig();
// Applies a TOML-subset file over `config`.
Status applyConfigFile(Config& config, const std::string& path);
// Parses argv; returns false in `run` for --help/--version (already printed).
Result<Config> loadConfig(int argc, char** argv, bool& run);
std::string configUsage();

}  // namespace vmm
