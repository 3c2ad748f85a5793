#include "api/spec.h"

#include "model/domain.h"

namespace vmm::api {

std::string_view roleName(Role r) {
  switch (r) {
    case Role::read: return "read";
    case Role::operate: return "operator";
    case Role::admin: return "admin";
  }
  return "read";
}

std::optional<Role> parseRole(std::string_view text) {
  if (text == "read") return Role::read;
  if (text == "operator") return Role::operate;
  if (text == "admin") return Role::admin;
  return std::nullopt;
}

std::string_view paramTypeName(ParamType t) {
  switch (t) {
    case ParamType::string: return "string";
    case ParamType::integer: return "integer";
    case ParamType::boolean: return "boolean";
    case ParamType::object: return "object";
    case ParamType::array: return "array";
    case ParamType::any: return "any";
    case ParamType::duration: return "duration";
  }
  return "any";
}

namespace {

using P = ParamSpec;
using T = ParamType;

ParamSpec pathName(const std::string& what) { return P{"name", T::string, true, "the " + what + "'s name", ParamIn::path, {}}; }
template <typename E>
std::vector<std::string> names(const model::EnumTable<E>& table) {
  std::vector<std::string> out;
  for (const auto& [value, name] : table) out.emplace_back(name);
  return out;
}
ParamSpec q(std::string name, T type, std::string desc, std::vector<std::string> choices = {}) {
  return P{std::move(name), type, false, std::move(desc), ParamIn::query, std::move(choices)};
}
ParamSpec b(std::string name, T type, std::string desc, bool required = false, std::vector<std::string> choices = {}) {
  return P{std::move(name), type, required, std::move(desc), ParamIn::body, std::move(choices)};
}

std::vector<OperationSpec> build() {
  std::vector<OperationSpec> s;
  // Calls on objects that belong to a project take the project to act in; lists may span all.
  auto add = [&](OperationSpec o) {
    for (const char* prefix : {"domain.", "snapshot.", "volume.", "image.", "operation."}) {
      if (o.name.rfind(prefix, 0) != 0) continue;
      o.params.push_back(q("project", T::string, "the project to act in (default: the principal's own, else \"default\")"));
      if (o.name.ends_with(".list") || o.name == "domain.stats_all")
        o.params.push_back(q("all_projects", T::boolean, "every project's objects, each with its project (principals "
                                                          "not bound to one project)"));
      break;
    }
    s.push_back(std::move(o));
  };

  // ---- host
  // A call, not quick: a driver's first probe runs QEMU.
  add({"host.info", "Host, daemon and driver capabilities", Role::read, false, false, "host", {},
       HttpRoute{"GET", "/v1/host", "", 200, "HostInfo"}});

  // ---- domains
  add({"domain.list", "List domains", Role::read, false, false, "domains",
       {q("full", T::boolean, "include definitions and runtime details (like ?recursion=1)"),
        q("state", T::string, "only domains in this state",
          {"shutoff", "starting", "running", "paused", "stopping", "crashed"}),
        q("active", T::boolean, "only running or paused domains"),
        q("type", T::string, "only domains of this driver type", names(model::kDriverTypes)),
        q("label", T::string, "label selector: key or key=value, comma-separated; all must match"),
        q("fields", T::string, "only these summary fields, comma-separated (e.g. name,state); not with full")},
       HttpRoute{"GET", "/v1/domains", "", 200, "DomainListItem[]"}, Lane::quick});
  add({"domain.get", "Get one domain with its definition and runtime state; runtime.graphics says where each display "
       "listens: a unix socket in the domain's private runtime directory (the default: root only), or a TCP address "
       "and port whose password (generated when the definition gave none) only operators and admins see",
       Role::read, false, false,
       "domains/{name}", {pathName("domain")}, HttpRoute{"GET", "/v1/domains/{name}", "", 200, "Domain"}, Lane::quick});
  add({"domain.xml", "A domain's definition as libvirt domain XML: {name, xml}; over HTTP the XML itself with "
       "Accept: application/xml", Role::read, false, false, "domains/{name}", {pathName("domain")},
       HttpRoute{"GET", "/v1/domains/{name}/xml", "", 200, "DomainXml", "", false, "xml"}, Lane::quick});
  // A call, not quick: it commits to the state store, an lxc definition stats host paths, and
  // with start it boots the domain (a QEMU start waits for a QMP greeting only a loop can read).
  add({"domain.create", "Define a new domain", Role::operate, false, false, "domains",
       {b("definition", T::object, "the domain definition (JSON), or libvirt domain XML as a string over HTTP with Content-Type application/xml", true),
        q("start", T::boolean, "start the domain once defined")},
       HttpRoute{"POST", "/v1/domains", "definition", 201, "Domain", "DomainDefinition", true}});
  add({"domain.update", "Replace a domain's definition (applies at next start if running)", Role::operate, false,
       false, "domains/{name}",
       {pathName("domain"), b("definition", T::object, "the new definition", true),
        q("generation", T::integer, "fail with 412 unless the domain is at this generation (HTTP: If-Match)")},
       HttpRoute{"PUT", "/v1/domains/{name}", "definition", 200, "Domain", "DomainDefinition", true, "", "generation"}});
  add({"domain.delete", "Undefine a domain (it must be shut off)", Role::operate, false, false, "domains/{name}",
       {pathName("domain")}, HttpRoute{"DELETE", "/v1/domains/{name}", "", 200, "Empty"}});
  add({"domain.start", "Start a domain", Role::operate, true, false, "domains/{name}",
       {pathName("domain"), b("paused", T::boolean, "leave the guest paused"),
        b("force_boot", T::boolean, "boot afresh, discarding a managed save")},
       HttpRoute{"POST", "/v1/domains/{name}/start", "", 202, "DomainSummary"}});
  add({"domain.save", "Save a running domain's state to a file and stop it (managed save without a path)",
       Role::operate, true, false, "domains/{name}",
       {pathName("domain"), b("path", T::string, "absolute path of the state file; omitted: managed save, resumed by the next start"),
        b("timeout", T::duration, "how long saving may take (default 120s)")},
       HttpRoute{"POST", "/v1/domains/{name}/save", "", 202, "DomainSummary"}});
  add({"domain.restore", "Start a shut-off domain from a state file written by save", Role::operate, true, false,
       "domains/{name}",
       {pathName("domain"), b("path", T::string, "the state file", true), b("paused", T::boolean, "leave the guest paused")},
       HttpRoute{"POST", "/v1/domains/{name}/restore", "", 202, "DomainSummary"}});
  add({"domain.shutdown", "Shut a domain down gracefully, destroying it after the timeout", Role::operate, true,
       true, "domains/{name}",
       {pathName("domain"), b("timeout", T::duration, "graceful period before it is destroyed (default 60s)"),
        b("force", T::boolean, "destroy at the timeout (default true); false fails instead")},
       HttpRoute{"POST", "/v1/domains/{name}/shutdown", "", 202, "DomainSummary"}});
  add({"domain.destroy", "Stop a domain immediately", Role::operate, false, false, "domains/{name}",
       {pathName("domain")}, HttpRoute{"POST", "/v1/domains/{name}/destroy", "", 200, "DomainSummary"}});
  add({"domain.reboot", "Reboot a domain", Role::operate, true, false, "domains/{name}", {pathName("domain")},
       HttpRoute{"POST", "/v1/domains/{name}/reboot", "", 202, "DomainSummary"}});
  add({"domain.reset", "Reset a domain (hard reboot)", Role::operate, false, false, "domains/{name}",
       {pathName("domain")}, HttpRoute{"POST", "/v1/domains/{name}/reset", "", 200, "DomainSummary"}});
  add({"domain.suspend", "Pause a domain's vCPUs", Role::operate, false, false, "domains/{name}",
       {pathName("domain")}, HttpRoute{"POST", "/v1/domains/{name}/suspend", "", 200, "DomainSummary"}});
  add({"domain.resume", "Resume a paused domain", Role::operate, false, false, "domains/{name}",
       {pathName("domain")}, HttpRoute{"POST", "/v1/domains/{name}/resume", "", 200, "DomainSummary"}});
  add({"domain.stats", "Statistics of one running domain", Role::read, false, false, "domains/{name}",
       {pathName("domain"), q("timeout", T::duration, "how long to wait for the hypervisor (default 5s)")},
       HttpRoute{"GET", "/v1/domains/{name}/stats", "", 200, "DomainStats"}});
  add({"domain.stats_all", "Statistics of every running domain; a stuck one reports an error", Role::read, false,
       false, "domains", {q("timeout", T::duration, "per-domain deadline (default 2s)")},
       HttpRoute{"GET", "/v1/stats/domains", "", 200, "DomainStatsEntry[]"}});
  add({"domain.attach_disk", "Attach a disk", Role::operate, false, false, "domains/{name}",
       {pathName("domain"), b("disk", T::object, "the disk, as in a definition", true),
        q("live", T::boolean, "hot-plug into the running domain (default: when running)"),
        q("config", T::boolean, "also save it in the definition (default true)")},
       HttpRoute{"POST", "/v1/domains/{name}/disks", "disk", 200, "Domain", "Disk"}});
  add({"domain.detach_disk", "Detach a disk", Role::operate, false, false, "domains/{name}",
       {pathName("domain"), P{"target", T::string, true, "the disk's target (vdb)", ParamIn::path, {}},
        q("live", T::boolean, "hot-unplug from the running domain (default: when running)"),
        q("config", T::boolean, "also remove it from the definition (default true)")},
       HttpRoute{"DELETE", "/v1/domains/{name}/disks/{target}", "", 200, "Domain"}});
  add({"domain.attach_nic", "Attach a network interface", Role::operate, false, false, "domains/{name}",
       {pathName("domain"), b("nic", T::object, "the NIC, as in a definition (type user: restricted to its forwards "
                                                "unless host_loopback is true, which also opens the host's loopback to the guest)", true),
        q("live", T::boolean, "hot-plug into the running domain (default: when running)"),
        q("config", T::boolean, "also save it in the definition (default true)")},
       HttpRoute{"POST", "/v1/domains/{name}/nics", "nic", 200, "Domain", "Nic"}});
  add({"domain.detach_nic", "Detach a network interface", Role::operate, false, false, "domains/{name}",
       {pathName("domain"), P{"mac", T::string, true, "the NIC's MAC address", ParamIn::path, {}},
        q("live", T::boolean, "hot-unplug from the running domain (default: when running)"),
        q("config", T::boolean, "also remove it from the definition (default true)")},
       HttpRoute{"DELETE", "/v1/domains/{name}/nics/{mac}", "", 200, "Domain"}});
  add({"domain.exec", "Run a command in the guest and collect its output and exit code. The operation's result is "
                      "{exit_code, signal, stdout, stderr, stdout_truncated, stderr_truncated}; output that is not "
                      "valid UTF-8 has U+FFFD in stdout/stderr and its exact bytes, base64, in stdout_b64/stderr_b64",
       Role::operate, true, true,
       "domains/{name}",
       {pathName("domain"), b("command", T::array, "program and arguments", true),
        b("env", T::array, "environment entries NAME=value"), b("input", T::string, "standard input"),
        b("timeout", T::duration, "how long the command may run (default 60s)")},
       HttpRoute{"POST", "/v1/domains/{name}/exec", "", 202, "ExecResult"}});
  add({"domain.guest", "A guest agent request: ping, info, interfaces, fsfreeze, fsthaw, shutdown", Role::operate,
       false, false, "domains/{name}",
       {pathName("domain"),
        P{"command", T::string, true, "the request", ParamIn::path,
          {"ping", "info", "interfaces", "fsfreeze", "fsthaw", "shutdown"}},
        q("timeout", T::duration, "deadline for the agent (default 10s)")},
       HttpRoute{"POST", "/v1/domains/{name}/guest/{command}", "", 200, "GuestReply"}});
  add({"domain.console_log", "The last bytes of a domain's console output", Role::operate, false, false,
       "domains/{name}",
       {pathName("domain"), q("bytes", T::integer, "at most this many bytes (default 65536)")},
       HttpRoute{"GET", "/v1/domains/{name}/console/log", "", 200, "ConsoleLog"}});

  // ---- snapshots
  auto snapParam = P{"snapshot", T::string, true, "the snapshot's name", ParamIn::path, {}};
  add({"snapshot.create", "Take a snapshot (internal by default; external: new overlays)", Role::operate, true, false,
       "domains/{name}",
       {pathName("domain"), b("snapshot", T::string, "its name (default: a timestamp)"),
        b("description", T::string, "free text"),
        b("disk_only", T::boolean, "disks only, no memory, even when running"),
        b("external", T::boolean, "new overlay files on top of the disks instead of snapshots inside qcow2 images"),
        b("memory", T::boolean, "include the running guest's memory (default true unless disk_only)"),
        b("quiesce", T::boolean, "freeze guest filesystems through the agent while taking it (default true)")},
       HttpRoute{"POST", "/v1/domains/{name}/snapshots", "", 202, "Snapshot"}});
  add({"snapshot.list", "List a domain's snapshots (each with its parent)", Role::read, false, false, "domains/{name}",
       {pathName("domain")}, HttpRoute{"GET", "/v1/domains/{name}/snapshots", "", 200, "Snapshot[]"}, Lane::quick});
  add({"snapshot.get", "Get one snapshot", Role::read, false, false, "domains/{name}",
       {pathName("domain"), snapParam}, HttpRoute{"GET", "/v1/domains/{name}/snapshots/{snapshot}", "", 200, "Snapshot"}, Lane::quick});
  add({"snapshot.current", "The snapshot the domain's current state descends from (null if none)", Role::read,
       false, false, "domains/{name}", {pathName("domain")},
       HttpRoute{"GET", "/v1/domains/{name}/current-snapshot", "", 200, "Snapshot?"}, Lane::quick});
  add({"snapshot.revert", "Revert a domain to a snapshot", Role::operate, true, false, "domains/{name}",
       {pathName("domain"), snapParam}, HttpRoute{"POST", "/v1/domains/{name}/snapshots/{snapshot}/revert", "", 202, "DomainSummary"}});
  add({"snapshot.delete", "Delete a snapshot (its children move to its parent)", Role::operate, true, false,
       "domains/{name}",
       {pathName("domain"), snapParam, q("children", T::boolean, "also delete every descendant")},
       HttpRoute{"DELETE", "/v1/domains/{name}/snapshots/{snapshot}", "", 202, "Empty"}});

  // ---- storage pools
  add({"pool.list", "List storage pools with their state and capacity", Role::read, false, false, "pools", {},
       HttpRoute{"GET", "/v1/pools", "", 200, "Pool[]"}, Lane::quick});
  add({"pool.get", "Get one storage pool", Role::read, false, false, "pools/{name}", {pathName("pool")},
       HttpRoute{"GET", "/v1/pools/{name}", "", 200, "Pool"}, Lane::quick});
  add({"pool.create", "Define a storage pool, optionally build its storage, and start it (all or nothing)",
       Role::admin, false, false, "pools",
       {b("definition", T::object, "the pool: name, type (dir, logical, netfs, iscsi), path, source", true),
        q("build", T::boolean, "prepare the storage first: create the directory; pvcreate + vgcreate (erases the devices)"),
        q("start", T::boolean, "start the pool once defined (default true)")},
       HttpRoute{"POST", "/v1/pools", "definition", 201, "Pool", "PoolDefinition"}});
  add({"pool.start", "Start (activate) a pool", Role::admin, false, false, "pools/{name}", {pathName("pool")},
       HttpRoute{"POST", "/v1/pools/{name}/start", "", 200, "Pool"}});
  add({"pool.stop", "Stop (deactivate) a pool", Role::admin, false, false, "pools/{name}", {pathName("pool")},
       HttpRoute{"POST", "/v1/pools/{name}/stop", "", 200, "Pool"}});
  add({"pool.refresh", "Re-read a pool's capacity and volumes from its storage", Role::admin, false, false,
       "pools/{name}", {pathName("pool")}, HttpRoute{"POST", "/v1/pools/{name}/refresh", "", 200, "Pool"}});
  add({"pool.delete", "Remove a pool's definition, and with storage=true its (empty) storage", Role::admin, false,
       false, "pools/{name}",
       {pathName("pool"), q("storage", T::boolean, "also delete the storage: rmdir, vgremove + pvremove")},
       HttpRoute{"DELETE", "/v1/pools/{name}", "", 200, "Empty"}});

  // ---- networks
  add({"network.list", "List virtual networks", Role::read, false, false, "networks", {},
       HttpRoute{"GET", "/v1/networks", "", 200, "Network[]"}, Lane::quick});
  add({"network.get", "Get one network with its host resources while active", Role::read, false, false,
       "networks/{name}", {pathName("network")}, HttpRoute{"GET", "/v1/networks/{name}", "", 200, "Network"}, Lane::quick});
  add({"network.create", "Define a network (nat, routed, isolated or bridge) and start it (all or nothing)",
       Role::admin, false, false, "networks",
       {b("definition", T::object, "name, mode, bridge, ipv4 (gateway/prefix), dhcp, dhcp_start/end, dhcp_hosts, domain, uplink, mtu", true),
        q("start", T::boolean, "start it once defined (default true)")},
       HttpRoute{"POST", "/v1/networks", "definition", 201, "Network", "NetworkDefinition"}});
  add({"network.start", "Start a network: bridge, addresses, NAT rules, DHCP", Role::admin, false, false,
       "networks/{name}", {pathName("network")}, HttpRoute{"POST", "/v1/networks/{name}/start", "", 200, "Network"}});
  add({"network.stop", "Stop a network, removing everything it created on the host", Role::admin, false, false,
       "networks/{name}",
       {pathName("network"), b("force", T::boolean, "stop even while running domains use it")},
       HttpRoute{"POST", "/v1/networks/{name}/stop", "", 200, "Network"}});
  add({"network.delete", "Delete a network (no domain may use it)", Role::admin, false, false, "networks/{name}",
       {pathName("network")}, HttpRoute{"DELETE", "/v1/networks/{name}", "", 200, "Empty"}});
  add({"network.leases", "The DHCP leases of an active network", Role::read, false, false, "networks/{name}",
       {pathName("network")}, HttpRoute{"GET", "/v1/networks/{name}/leases", "", 200, "Lease[]"}});

  // ---- volumes
  auto poolParam = P{"pool", T::string, true, "the pool's name", ParamIn::path, {}};
  add({"volume.list", "List the volumes of a pool", Role::read, false, false, "pools/{pool}", {poolParam},
       HttpRoute{"GET", "/v1/pools/{pool}/volumes", "", 200, "Volume[]"}, Lane::quick});
  add({"volume.get", "Get one volume", Role::read, false, false, "pools/{pool}/volumes/{name}",
       {poolParam, pathName("volume")}, HttpRoute{"GET", "/v1/pools/{pool}/volumes/{name}", "", 200, "Volume"}, Lane::quick});
  add({"volume.create", "Create a volume (a linked clone with backing_volume)", Role::operate, false, false,
       "pools/{pool}",
       {poolParam, b("volume", T::object, "name, capacity (\"10G\" or bytes), format (qcow2, raw), backing_volume, preallocate", true)},
       HttpRoute{"POST", "/v1/pools/{pool}/volumes", "volume", 201, "Volume", "VolumeSpec"}});
  add({"volume.delete", "Delete a volume (refused while a domain uses it)", Role::operate, false, false,
       "pools/{pool}/volumes/{name}", {poolParam, pathName("volume")},
       HttpRoute{"DELETE", "/v1/pools/{pool}/volumes/{name}", "", 200, "Empty"}});
  add({"volume.resize", "Change a volume's capacity", Role::operate, false, false, "pools/{pool}/volumes/{name}",
       {poolParam, pathName("volume"), b("capacity", T::any, "the new size (\"20G\" or bytes)", true),
        b("shrink", T::boolean, "allow making it smaller (loses data beyond the new size)")},
       HttpRoute{"POST", "/v1/pools/{pool}/volumes/{name}/resize", "", 200, "Volume"}});
  add({"volume.clone", "Clone a volume: a linked qcow2 clone (instant) or a full copy (with progress)", Role::operate,
       true, false, "pools/{pool}/volumes/{name}",
       {poolParam, pathName("volume"), b("target", T::string, "the new volume's name", true),
        b("linked", T::boolean, "a qcow2 overlay on the source (default true); false: a full, independent copy")},
       HttpRoute{"POST", "/v1/pools/{pool}/volumes/{name}/clone", "", 202, "Volume"}});
  add({"volume.wipe", "Erase a volume's content (keeping its size and format)", Role::operate, true, false,
       "pools/{pool}/volumes/{name}", {poolParam, pathName("volume")},
       HttpRoute{"POST", "/v1/pools/{pool}/volumes/{name}/wipe", "", 202, "Volume"}});

  // ---- images and disposable domains
  add({"image.list", "List images", Role::read, false, false, "images", {}, HttpRoute{"GET", "/v1/images", "", 200, "Image[]"}, Lane::quick});
  add({"image.get", "Get one image", Role::read, false, false, "images/{name}", {pathName("image")},
       HttpRoute{"GET", "/v1/images/{name}", "", 200, "Image"}, Lane::quick});
  add({"image.import", "Import an image from a host file (qcow2, raw, ISO) or an http(s) URL", Role::operate, true, true,
       "images",
       {b("name", T::string, "the image's name", true), b("file", T::string, "absolute path of a host file"),
        b("url", T::string, "an https:// URL the host can reach (http:// only with [images] allow_http = true)"),
        b("sha256", T::string, "the file's SHA-256 (64 hex digits): a mismatch is refused and nothing is kept"),
        b("kernel", T::string, "host path of a kernel for direct boot"), b("initrd", T::string, "host path of an initrd"),
        b("os", T::string, "operating system"), b("arch", T::string, "architecture (default x86_64)"),
        b("default_user", T::string, "the user to log in as"), b("description", T::string, "free text"),
        b("template", T::object, "domain settings launched domains start from (memory, vcpus, boot.cmdline, nics...)")},
       HttpRoute{"POST", "/v1/images", "", 202, "Image"}});
  add({"image.from_domain", "Make a template image of a shut-off domain's disk (a flattened copy)", Role::operate, true,
       false, "images",
       {b("name", T::string, "the image's name", true), b("domain", T::string, "the shut-off domain", true),
        b("description", T::string, "free text"), b("os", T::string, "operating system"),
        b("default_user", T::string, "the user to log in as")},
       HttpRoute{"POST", "/v1/images/from-domain", "", 202, "Image"}});
  add({"image.delete", "Delete an image (refused while launched domains sit on it)", Role::operate, false, false,
       "images/{name}", {pathName("image")}, HttpRoute{"DELETE", "/v1/images/{name}", "", 200, "Empty"}});
  std::vector<ParamSpec> launchParams = {
      b("image", T::string, "the image", true), b("name", T::string, "the domain's name (default IMAGE-xxxxxx)"),
      b("memory", T::any, "memory (\"1GiB\" or bytes; default from the image)"), b("vcpus", T::integer, "vCPUs"),
      b("networks", T::array, "a NIC on each of these vmm networks"),
      b("full_copy", T::boolean, "an independent copy of the image instead of a linked clone"),
      b("ttl", T::duration, "vmmd destroys and deletes the domain after this long (also across restarts)"),
      b("remove_on_stop", T::boolean, "delete the domain and its volumes once it stops"),
      b("labels", T::object, "labels of the domain"),
      b("cloud_init", T::object, "a cloud-init NoCloud seed: hostname, users, ssh_authorized_keys, packages, runcmd, "
                                 "write_files, user_data, network_config"),
      b("customize", T::object, "offline changes to the disk before boot (libguestfs): files, ssh_keys, hostname, run")};
  {
    auto params = launchParams;
    params.push_back(b("start", T::boolean, "start it (default true); false: define only"));
    add({"domain.launch", "Create a domain from an image and start it (one call; an operation)", Role::operate, true,
         true, "domains", params, HttpRoute{"POST", "/v1/launch", "", 202, "DomainSummary"}});
  }
  {
    auto runParams = launchParams;
    runParams.push_back(b("command", T::array, "program and arguments to run in the guest", true));
    runParams.push_back(b("env", T::array, "environment entries NAME=value"));
    runParams.push_back(b("input", T::string, "standard input"));
    runParams.push_back(b("timeout", T::duration, "how long the command may run (default 1h)"));
    runParams.push_back(b("boot_timeout", T::duration, "how long to wait for the guest agent (default 5m)"));
    runParams.push_back(b("remove", T::boolean, "delete the domain and its volumes afterwards (default true)"));
    add({"domain.run", "Launch a disposable domain from an image, run a command in it, return its output and exit "
                       "code, and remove the domain (also when cancelled). The result has the fields of domain.exec's "
                       "(stdout_b64/stderr_b64 only for output that is not UTF-8) plus domain and removed; "
                       "operation.output events carry data, and data_b64 for a chunk that is not UTF-8",
         Role::operate, true, true, "domains", runParams, HttpRoute{"POST", "/v1/run", "", 202, "RunResult"}});
  }
  add({"domain.remove", "Destroy and undefine a domain and delete the volumes its launch made", Role::operate, false,
       false, "domains/{name}", {pathName("domain")}, HttpRoute{"POST", "/v1/domains/{name}/remove", "", 200, "Empty"}});

  // ---- operations
  add({"operation.list", "List operations (each with result_bytes instead of its result: operation.get has it)", Role::read, false, false, "operations",
       {q("active", T::boolean, "only pending and running operations")},
       HttpRoute{"GET", "/v1/operations", "", 200, "Operation[]"}, Lane::quick});
  add({"operation.get", "Get an operation", Role::read, false, false, "operations/{id}",
       {P{"id", T::string, true, "operation id", ParamIn::path, {}}}, HttpRoute{"GET", "/v1/operations/{id}", "", 200, "Operation"}, Lane::quick});
  add({"operation.wait", "Wait for an operation to finish (or the timeout) and return it", Role::read, false, false,
       "operations/{id}",
       {P{"id", T::string, true, "operation id", ParamIn::path, {}},
        q("timeout", T::duration, "how long to wait (default 60s, at most 1h)")},
       HttpRoute{"GET", "/v1/operations/{id}/wait", "", 200, "Operation"}, Lane::wait});
  add({"operation.result", "The whole result of a finished operation, also when operation.get shows it "
                           "truncated (results over 1 MiB are kept whole for [operations] result_ttl, default 1h)",
       Role::operate, false, false, "operations/{id}",
       {P{"id", T::string, true, "operation id", ParamIn::path, {}}},
       HttpRoute{"GET", "/v1/operations/{id}/result", "", 200, "OperationResult"}});
  add({"operation.cancel", "Cancel an operation", Role::operate, false, false, "operations/{id}",
       {P{"id", T::string, true, "operation id", ParamIn::path, {}}},
       HttpRoute{"DELETE", "/v1/operations/{id}", "", 200, "Operation"}});

  // ---- projects
  add({"project.list", "List projects with their restrictions, limits and usage (a principal bound to a project sees "
                       "only its own)", Role::read, false, false, "projects", {}, HttpRoute{"GET", "/v1/projects", "", 200, "Project[]"}});
  add({"project.get", "Get one project with its usage", Role::read, false, false, "projects/{name}", {pathName("project")},
       HttpRoute{"GET", "/v1/projects/{name}", "", 200, "Project"}});
  add({"project.create", "Create a project: its domains, volumes, images, operations and events are invisible to other "
                         "projects", Role::admin, false, false, "projects",
       {b("definition", T::object, "name, description, restrictions {restricted, pools, networks, images}, limits "
                                   "{domains, vcpus, memory, disk, running}", true)},
       HttpRoute{"POST", "/v1/projects", "definition", 201, "Project", "ProjectDefinition"}});
  add({"project.update", "Change a project's description, restrictions or limits (the keys given; a null limit is "
                         "removed)", Role::admin, false, false, "projects/{name}",
       {pathName("project"), b("changes", T::object, "description, restrictions, limits", true)},
       HttpRoute{"PUT", "/v1/projects/{name}", "changes", 200, "Project", "ProjectChanges"}});
  add({"project.delete", "Delete a project (it must have no domains, volumes or tokens)", Role::admin, false, false,
       "projects/{name}", {pathName("project")}, HttpRoute{"DELETE", "/v1/projects/{name}", "", 200, "Empty"}});

  // ---- the audit trail
  add({"audit.list", "Calls that needed more than the read role, refused ones too, newest last: time, principal, role, "
                     "transport, method, object, result, duration and the operation started (vmmd keeps the last "
                     "10000; each is also one \"audit\" log line)",
       Role::admin, false, false, "audit",
       {q("principal", T::string, "only calls of this principal (\"token ci\", \"uid 0 (pid 42)\")"),
        q("method", T::string, "only this method, or a group of them (\"domain\")"),
        q("object", T::string, "only calls on this object (\"domains/web1\")"),
        q("after", T::integer, "only records after this sequence number"),
        q("limit", T::integer, "at most this many, the newest (default 100, at most 10000)")},
       HttpRoute{"GET", "/v1/audit", "", 200, "AuditRecord[]"}, Lane::quick});

  // ---- access tokens for the HTTP API (create and delete are calls: each commits, an fsync)
  add({"token.list", "List API tokens: name, role, description, created, expires and whether expired (never the secret)", Role::admin, false, false, "tokens", {},
       HttpRoute{"GET", "/v1/tokens", "", 200, "Token[]"}, Lane::quick});
  add({"token.create", "Create an API token; the secret is shown only in this reply", Role::admin, false, false,
       "tokens",
       {b("name", T::string, "a name for the token", true),
        b("role", T::string, "read (see everything but guest output), operator (manage domains, volumes, images and "
                             "snapshots, exec and consoles; no host paths) or admin (everything: root on the host)",
          true, {"read", "operator", "admin"}),
        b("expires", T::duration, "the token stops working this long after its creation (\"30d\"); default never"),
        b("description", T::string, "free text: what the token is for"),
        b("project", T::string, "bind the token to this project: it acts there only and sees nothing else (default: "
                                "not bound; it picks a project per call)"),
        b("certificate", T::string, "a PEM TLS client certificate: whoever presents it over HTTPS is this principal "
                                    "(trusted by its SHA-256 fingerprint, no CA needed); no secret is made and the reply "
                                    "has its fingerprint instead")},
       HttpRoute{"POST", "/v1/tokens", "", 201, "TokenCreated"}});
  add({"token.delete", "Revoke an API token; its open event, console and transfer streams close within a second", Role::admin, false, false, "tokens/{name}",
       {P{"name", T::string, true, "the token's name", ParamIn::path, {}}},
       HttpRoute{"DELETE", "/v1/tokens/{name}", "", 200, "Empty"}});
  return s;
}

}  // namespace

const std::vector<OperationSpec>& operationSpecs() {
  static const std::vector<OperationSpec> specs = build();
  return specs;
}

const OperationSpec* findSpec(const std::string& name) {
  for (const auto& s : operationSpecs())
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace vmm::api
