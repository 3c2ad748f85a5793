#include "daemon/config.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "base/fs.h"
#include "base/strings.h"
#include "base/toml_lite.h"
#include "drivers/registry.h"
#include "model/json_reader.h"
#include "model/units.h"

namespace vmm {

Config defaultConfig() {
  Config c;
  if (geteuid() == 0) {
    c.stateDir = "/var/lib/vmm";
    c.runDir = "/run/vmm";
  } else {
    const char* home = getenv("HOME");
    const char* xdg = getenv("XDG_RUNTIME_DIR");
    c.stateDir = std::string(home ? home : "/tmp") + "/.local/share/vmm";
    c.runDir = xdg ? std::string(xdg) + "/vmm" : "/tmp/vmm-" + std::to_string(geteuid());
  }
  return c;
}

namespace {

void readDuration(model::JsonReader& r, const char* key, Millis& out) {
  std::string s;
  r.optional(key, s);
  if (!r.ok() || s.empty()) return;
  auto d = parseDuration(s);
  if (!d) return r.fail(key, "expected a duration such as \"30s\"");
  out = *d;
}

void readSizeT(model::JsonReader& r, const char* key, size_t& out, int64_t min, int64_t max) {
  int64_t v = static_cast<int64_t>(out);
  r.optional(key, v, min, max);
  out = static_cast<size_t>(v);
}

}  // namespace

Status applyConfigFile(Config& c, const std::string& path) {
  VMM_ASSIGN(auto text, fs::readFile(path, 1 << 20));
  auto parsed = parseTomlLite(text);
  if (!parsed.ok()) return parsed.error().wrap(path);
  model::JsonReader r(*parsed, "");
  r.optional("state_dir", c.stateDir);
  r.optional("run_dir", c.runDir);
  r.optional("log_level", c.logLevel);
  r.optional("log_format", c.logFormat);
  r.optional("log_file", c.logFile);
  r.optional("drivers", c.drivers);
  r.optional("sync_full", c.syncFull);
  r.object("rpc", [&](model::JsonReader& s) {
    s.optional("socket", c.socketPath);
    s.optional("ro_socket", c.roSocketPath);
    s.optional("group", c.socketGroup);
    s.optional("ro_group", c.roSocketGroup);
    s.optional("operator_group", c.operatorGroup);
    s.optional("operator_project", c.operatorProject);
    readSizeT(s, "max_request_bytes", c.maxRequestBytes, 1024, 1 << 30);
  });
  r.object("http", [&](model::JsonReader& h) {
    h.optional("listen", c.httpListen);
    h.optional("tls_cert", c.tlsCert);
    h.optional("tls_key", c.tlsKey);
    h.optional("allowed_hosts", c.httpAllowedHosts);
    h.optional("allow_plaintext", c.httpAllowPlaintext);
    h.optional("threads", c.httpThreads, 2, 1024);
    readDuration(h, "header_timeout", c.httpHeaderTimeout);
    readDuration(h, "idle_timeout", c.httpIdleTimeout);
    for (auto [key, value] : {std::pair{"header_timeout", c.httpHeaderTimeout}, std::pair{"idle_timeout", c.httpIdleTimeout}})
      if (value < Millis(1000) || value > Millis(3600 * 1000)) h.fail(key, "expected a duration from 1s to 1h");
  });
  r.object("operations", [&](model::JsonReader& o) {
    readSizeT(o, "keep", c.operationsKeep, 10, 1000000);
    readDuration(o, "max_age", c.operationsMaxAge);
  });
  r.object("storage", [&](model::JsonReader& st) {
    st.optional("default_pool", c.defaultPool);
    readDuration(st, "io_timeout", c.storageIoTimeout);
    st.optionalSize("unpack_max_bytes", c.unpackMaxBytes);
    readSizeT(st, "unpack_max_files", c.unpackMaxFiles, 1, int64_t{1} << 32);
  });
  r.object("network", [&](model::JsonReader& n) { n.optional("default_network", c.defaultNetwork); });
  r.object("images", [&](model::JsonReader& i) {
    i.optional("pool", c.imagePool);
    i.optional("customize_helper", c.customizeHelper);
    i.optional("guestfs_env", c.guestfsEnv);
    i.optional("ca_file", c.imageCaFile);
    i.optional("allow_http", c.imageAllowHttp);
  });
  r.object("capacity", [&](model::JsonReader& k) {
    k.optionalSize("memory", c.capacityMemory);
    k.optional("vcpus", c.capacityVcpus, 0, 1 << 20);
  });
  r.object("containers", [&](model::JsonReader& k) {
    k.optional("pids_max", c.containerPidsMax, 0, int64_t{1} << 22);
    k.optional("idmap_range", c.containerIdmapRange);
  });
  r.object("qemu", [&](model::JsonReader& q) {
    q.optional("unprivileged", c.qemuUnprivileged);
    q.optional("uid_range", c.qemuUidRange);
  });
  r.object("events", [&](model::JsonReader& e) { readSizeT(e, "queue", c.eventQueue, 16, 1 << 20); });
  r.object("domains", [&](model::JsonReader& d) {
    readDuration(d, "job_wait", c.jobWait);
    readDuration(d, "shutdown_timeout", c.shutdownTimeout);
  });
  auto st = r.finish();
  if (!st.ok()) return st.error().wrap(path);
  if (auto range = containerIdmapRange(c); !range.ok()) return range.error().wrap(path);
  if (auto range = qemuUidRange(c); !range.ok()) return range.error().wrap(path);
  c.configFile = path;
  return {};
}

Result<std::pair<uint64_t, uint64_t>> containerIdmapRange(const Config& config, const std::string& subuidFile) {
  auto parse = [](std::string_view start, std::string_view count) -> std::optional<std::pair<uint64_t, uint64_t>> {
    auto s = parseInt(std::string(start)), n = parseInt(std::string(count));
    if (!s || !n || *s < 1 || *n < 65536 || *s + *n > (int64_t{1} << 32) - 1) return std::nullopt;
    return std::make_pair(static_cast<uint64_t>(*s), static_cast<uint64_t>(*n));
  };
  if (!config.containerIdmapRange.empty()) {
    auto colon = config.containerIdmapRange.find(':');
    auto r = colon == std::string::npos ? std::nullopt
                                        : parse(std::string_view(config.containerIdmapRange).substr(0, colon),
                                                std::string_view(config.containerIdmapRange).substr(colon + 1));
    if (!r) return invalidArgument("containers.idmap_range: expected \"START:COUNT\" with START >= 1, COUNT >= 65536, below 2^32");
    return *r;
  }
  // Like Incus: the ids delegated to root in /etc/subuid, else a billion ids above a million.
  for (const auto& line : split(fs::readFile(subuidFile, 1 << 20).valueOr(""), '\n', true)) {
    auto f = split(std::string(trim(line)), ':', false);
    if (f.size() == 3 && (f[0] == "root" || f[0] == "0"))
      if (auto r = parse(f[1], f[2])) return *r;
  }
  return std::make_pair(uint64_t{1000000}, uint64_t{1000000000});
}

Result<std::pair<uint64_t, uint64_t>> qemuUidRange(const Config& config, const std::string& subuidFile) {
  auto colon = config.qemuUidRange.find(':');
  auto start = parseInt(config.qemuUidRange.substr(0, colon));
  auto count = colon == std::string::npos ? std::nullopt : parseInt(config.qemuUidRange.substr(colon + 1));
  // Not 0 (root) nor the 16-bit nobody/ overflow ids; below 2^32 - 1 ((uid_t)-1 means "unchanged").
  if (!start || !count || *start < 1000 || *count < 2 || *start + *count > (int64_t{1} << 32) - 1 ||
      (*start <= 65535 && *start + *count > 65534))
    return invalidArgument("qemu.uid_range: expected \"START:COUNT\" with START >= 1000, COUNT >= 2 (the last id is qemu-img's and vmm-customize's), not reaching 65534 nor 2^32 - 1");
  VMM_ASSIGN(auto containers, containerIdmapRange(config, subuidFile));
  uint64_t first = static_cast<uint64_t>(*start), end = first + static_cast<uint64_t>(*count);
  if (first < containers.first + containers.second && containers.first < end)
    return invalidArgument("qemu.uid_range " + config.qemuUidRange + " overlaps the containers' host ids (" +
                           std::to_string(containers.first) + ":" + std::to_string(containers.second) + ")");
  return std::make_pair(first, end - first);
}

std::vector<std::string> defaultDrivers() {
  std::vector<std::string> out;
  for (const auto& d : drivers::driverRegistry()) out.emplace_back(d.name());
  return out;
}

std::string configUsage() {
  std::string text = R"(Usage: vmmd [options]

The vmm daemon: one host's virtual machines and containers, storage pools, networks and
snapshots, served over a JSON-RPC unix socket and an HTTP API.

Options:
  --config FILE        configuration file (default /etc/vmm/vmmd.toml when present)
  --state-dir DIR      persistent state: database, logs, default pool (default /var/lib/vmm)
  --run-dir DIR        sockets and pid files (default /run/vmm)
  --socket PATH        read-write JSON-RPC socket (default RUN_DIR/vmmd.sock)
  --ro-socket PATH     read-only JSON-RPC socket (default RUN_DIR/vmmd-ro.sock)
  --socket-group NAME  members of this group may use the read-write socket (default: root only)
  --ro-socket-group NAME  members of this group may use the read-only socket; "*": every local
                       user (default: root only)
  --operator-group NAME  members of this group use the read-write socket as operators (manage
                       domains and volumes, no host paths; default: none)
  --operator-project NAME  ...and act in this project only (default: any they name)
  --listen ADDR:PORT   HTTP API address (default 127.0.0.1:8470; "none" disables HTTP)
  --tls-cert FILE      serve HTTPS with this certificate ...
  --tls-key FILE       ... and key
  --drivers LIST       comma-separated hypervisor drivers to load (default DRIVERS)
  --log-level LEVEL    debug, info, warn or error (default info)
  --log-format FORMAT  logfmt or json (default logfmt)
  --log-file FILE      append logs to FILE instead of stderr
  --default-pool yes|no     create the dir pool "default" at the first start (default yes)
  --default-network yes|no  create the NAT network "default" at the first start (default yes)
  --capacity-memory SIZE    memory that launched domains may use in all (default: host memory - 1 GiB)
  --capacity-vcpus N        vCPUs that launched domains may use in all (default: 8 per host CPU)
  --image-ca-file FILE      CA certificates (PEM) that https image downloads trust instead of the system's
  --image-allow-http yes|no image downloads over plain http:// (default no: https only)
  --qemu-unprivileged yes|no each QEMU as a uid of its own without capabilities (default yes)
  --version            print the version and exit
  -h, --help           print this help and exit

Signals: SIGTERM/SIGINT stop vmmd cleanly (guests keep running); SIGHUP reopens the log file.
)";
  return text.replace(text.find("DRIVERS"), 7, drivers::driverNames(","));
}

Result<Config> loadConfig(int argc, char** argv, bool& run) {
  run = true;
  Config c = defaultConfig();
  std::vector<std::pair<std::string, std::string>> flags;
  std::string configPath;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << configUsage();
      run = false;
      return c;
    }
    if (a == "--version") {
      std::cout << "vmmd " VMM_VERSION "\n";
      run = false;
      return c;
    }
    if (!startsWith(a, "--")) return invalidArgument("unexpected argument " + quote(a) + " (see --help)");
    std::string key = a.substr(2), value;
    auto eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else {
      if (i + 1 >= argc) return invalidArgument("option --" + key + " needs a value");
      value = argv[++i];
    }
    if (key == "config") configPath = value;
    else flags.emplace_back(key, value);
  }
  if (configPath.empty() && fs::exists("/etc/vmm/vmmd.toml")) configPath = "/etc/vmm/vmmd.toml";
  if (!configPath.empty()) VMM_TRY(applyConfigFile(c, configPath));
  for (const auto& [key, value] : flags) {
    if (key == "state-dir") c.stateDir = value;
    else if (key == "run-dir") c.runDir = value;
    else if (key == "socket") c.socketPath = value;
    else if (key == "ro-socket") c.roSocketPath = value;
    else if (key == "socket-group") c.socketGroup = value;
    else if (key == "ro-socket-group") c.roSocketGroup = value;
    else if (key == "operator-group") c.operatorGroup = value;
    else if (key == "operator-project") c.operatorProject = value;
    else if (key == "listen") c.httpListen = value == "none" ? "" : value;
    else if (key == "tls-cert") c.tlsCert = value;
    else if (key == "tls-key") c.tlsKey = value;
    else if (key == "drivers") c.drivers = split(value, ',', true);
    else if (key == "log-level") c.logLevel = value;
    else if (key == "log-format") c.logFormat = value;
    else if (key == "log-file") c.logFile = value;
    else if (key == "default-network" || key == "default-pool" || key == "image-allow-http" || key == "qemu-unprivileged") {
      if (value != "yes" && value != "no") return invalidArgument("--" + key + " takes yes or no");
      (key == "default-network"    ? c.defaultNetwork
       : key == "default-pool"     ? c.defaultPool
       : key == "image-allow-http" ? c.imageAllowHttp
                                   : c.qemuUnprivileged) = value == "yes";
    }
    else if (key == "capacity-memory") {
      auto size = model::parseSize(value);
      if (!size.ok()) return size.error().wrap("--capacity-memory");
      c.capacityMemory = *size;
    } else if (key == "capacity-vcpus") {
      auto n = parseUint(value);
      if (!n || *n < 1 || *n > (1 << 20)) return invalidArgument("--capacity-vcpus takes a positive number");
      c.capacityVcpus = static_cast<int64_t>(*n);
    }
    else if (key == "image-ca-file") c.imageCaFile = value;
    else return invalidArgument("unknown option --" + key + " (see --help)");
  }
  if (c.socketPath.empty()) c.socketPath = c.runDir + "/vmmd.sock";
  if (c.roSocketPath.empty()) c.roSocketPath = c.runDir + "/vmmd-ro.sock";
  if (c.logFormat != "logfmt" && c.logFormat != "json") return invalidArgument("log format must be logfmt or json");
  if (c.tlsCert.empty() != c.tlsKey.empty()) return invalidArgument("TLS needs both a certificate and a key");
  if (!c.imageCaFile.empty() && !fs::exists(c.imageCaFile))
    return invalidArgument("image CA file " + quote(c.imageCaFile) + " does not exist");
  for (const auto& d : c.drivers) {
    if (!drivers::findDriver(d)) return invalidArgument("unknown driver " + quote(d) + " (known: " + drivers::driverNames() + ")");
  }
  VMM_TRY(qemuUidRange(c));  // also when no file was read: root's /etc/subuid may meet it
  return c;
}

}  // namespace vmm
