// API benchmark: define N domains, list them, read one, ask for the version and remove them,
// through vmmd (JSON-RPC socket and HTTP API: one kept-alive connection each, each to its own
// vmmd so that both hold exactly N domains) and through libvirt's C API (qemu:///system through
// libvirtd; test:///default in-process); and whole CLI processes (vmctl, virsh) while the N
// domains exist.
//
// Every operation runs in pairs: pair i runs it once on every client that has it, in the order
// bench/sampling.py uses (rotation by pair, reversed every other round), each timed call right
// after an untimed warm-up of the same kind through the same client (the same call; for define
// and undefine, the define + undefine of a scratch domain). A failed call is a gap (null) in its
// pair. Prints every sample as JSON; bench/api_result.py computes the statistics.
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <malloc.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fcntl.h>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/time_util.h"
#include "client/vmmclient.h"

extern char** environ;

using json = nlohmann::json;
using namespace vmm;

namespace {

double nowMs() {
  return std::chrono::duration<double, std::milli>(SteadyClock::now().time_since_epoch()).count();
}

std::string domName(int i) { return "vmmbench" + std::to_string(i); }
const char* kScratch = "vmmbench-scratch";

// One client's implementation of the operations it has: each returns whether it succeeded.
struct Client {
  std::string name;
  std::map<std::string, std::function<bool(int)>> ops;
  std::map<std::string, std::function<void(int)>> warmups;  // default: the op itself, untimed
};

std::vector<std::string> orderFor(std::vector<std::string> names, int pair) {
  int n = static_cast<int>(names.size());
  std::rotate(names.begin(), names.begin() + pair % n, names.end());
  if ((pair / n) % 2 == 1) std::reverse(names.begin(), names.end());
  return names;
}

json runOp(const std::string& op, int pairs, std::vector<Client>& clients, const std::string& preceding) {
  std::vector<std::string> names;
  std::map<std::string, Client*> byName;
  for (auto& c : clients)
    if (c.ops.count(op)) {
      names.push_back(c.name);
      byName[c.name] = &c;
    }
  json samples = json::object(), orders = json::array();
  std::map<std::string, int> failures;
  for (const auto& n : names) samples[n] = json::array();
  for (int i = 0; i < pairs; ++i) {
    auto order = orderFor(names, i);
    orders.push_back(order);
    for (const auto& n : order) {
      Client& c = *byName[n];
      auto w = c.warmups.find(op);
      if (w != c.warmups.end()) w->second(i);
      else (void)c.ops[op](i);
      double t0 = nowMs();
      bool ok = c.ops[op](i);
      double ms = nowMs() - t0;
      if (!ok) failures[n]++;
      samples[n].push_back(ok ? json(ms) : json(nullptr));
    }
  }
  // Samples in pair order per client (pushed in run order, which is pair order per client).
  std::cerr << op << ": " << pairs << " pairs done\n";
  return {{"pairs", pairs}, {"orders", orders}, {"samples_ms", samples}, {"failures", failures}, {"preceding_state", preceding}};
}

// ---------------------------------------------------------------- vmm

Client vmmClient(const std::string& label, client::Connection& c, int n, json& info) {
  auto def = [](const std::string& name) {
    return json{{"definition", {{"name", name}, {"type", "test"}, {"memory", "256MiB"}, {"vcpus", 1}}}};
  };
  for (int i = 0; i < n; ++i) (void)c.call("domain.delete", {{"name", domName(i)}});
  (void)c.call("domain.delete", {{"name", kScratch}});
  Client cl{label, {}, {}};
  auto scratch = [&c, def](int) {
    (void)c.call("domain.create", def(kScratch));
    (void)c.call("domain.delete", {{"name", kScratch}});
  };
  cl.ops["define"] = [&c, def](int i) { return c.call("domain.create", def(domName(i))).ok(); };
  cl.warmups["define"] = scratch;
  // Domains that were there before the benchmark (none on a fresh vmmd) stay in every list.
  auto before = c.call("domain.list", {{"active", false}});
  int expected = n + (before.ok() ? static_cast<int>(before->size()) : 0);
  info[label + " preexisting"] = expected - n;
  // Typed lists (libvmmclient decodes the reply into structs, as libvirt's client library decodes
  // its reply into records): every summary field, then only what libvirt's calls return.
  auto typedList = [&c, &info, label, expected](uint32_t fields, bool count) {
    return [&c, &info, label, expected, fields, count](int) {
      client::DomainListRequest request;
      request.fields = fields;
      auto r = client::listDomains(c, request);
      if (r.ok() && count) info[label + " list_count"] = r->size();
      return r.ok() && static_cast<int>(r->size()) == expected && !r->back().name.empty();
    };
  };
  cl.ops["list"] = typedList(wire::kAllSummaryFields, true);
  cl.ops["list_names"] = typedList(wire::kName | wire::kUuid, false);
  cl.ops["list_state"] = typedList(wire::kName | wire::kUuid | wire::kState | wire::kReason, false);
  cl.ops["get"] = [&c, n](int) { return c.call("domain.get", {{"name", domName(n / 2)}}).ok(); };
  cl.ops["version"] = [&c](int) { return c.call("host.info").ok(); };
  cl.ops["undefine"] = [&c](int i) { return c.call("domain.delete", {{"name", domName(i)}}).ok(); };
  cl.warmups["undefine"] = scratch;
  return cl;
}

// ---------------------------------------------------------------- libvirt

void silence(void*, virErrorPtr) {}

struct Libvirt {
  virConnectPtr conn = nullptr;
  std::string type;
  std::vector<virDomainPtr> handles;  // looked up (untimed) before undefine
  virDomainPtr getHandle = nullptr;

  std::string xml(const std::string& name) const {
    return "<domain type='" + type + "'><name>" + name +
           "</name><memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>";
  }
  bool define(const std::string& name) {
    virDomainPtr d = virDomainDefineXML(conn, xml(name).c_str());
    if (d) virDomainFree(d);
    return d != nullptr;
  }
  void undefineByName(const std::string& name) {
    if (virDomainPtr d = virDomainLookupByName(conn, name.c_str())) {
      virDomainUndefine(d);
      virDomainFree(d);
    }
  }
};

Client libvirtClient(const std::string& uri, Libvirt& lv, int n, json& info) {
  std::string label = "libvirt " + uri;
  lv.conn = virConnectOpen(uri.c_str());
  if (!lv.conn) {
    info[label + " error"] = "cannot connect";
    return {label, {}, {}};
  }
  lv.type = uri.rfind("test:", 0) == 0 ? "test" : "qemu";
  for (int i = 0; i < n; ++i) lv.undefineByName(domName(i));
  lv.undefineByName(kScratch);
  // Domains that were there before (test:///default has its own "test") stay in every list.
  int expected = n + std::max(0, virConnectNumOfDomains(lv.conn) + virConnectNumOfDefinedDomains(lv.conn));
  info[label + " preexisting"] = expected - n;
  Client cl{label, {}, {}};
  auto scratch = [&lv](int) {
    lv.define(kScratch);
    lv.undefineByName(kScratch);
  };
  cl.ops["define"] = [&lv](int i) { return lv.define(domName(i)); };
  cl.warmups["define"] = scratch;
  // One call answering names (with uuid and id: the domain handles) and states (state and reason).
  cl.ops["list"] = [&lv, &info, label, expected](int) {
    virDomainStatsRecordPtr* recs = nullptr;
    int k = virConnectGetAllDomainStats(lv.conn, VIR_DOMAIN_STATS_STATE, &recs, 0);
    if (k < 0) return false;
    int states = 0;
    for (int i = 0; i < k; ++i) {
      (void)virDomainGetName(recs[i]->dom);
      for (int j = 0; j < recs[i]->nparams; ++j)
        if (std::string(recs[i]->params[j].field) == "state.state") ++states;
    }
    virDomainStatsRecordListFree(recs);
    info[label + " list_count"] = k;
    return k == expected && states == k;
  };
  cl.ops["list_state"] = cl.ops["list"];
  // Names only (one call; the handles carry name, uuid and id; no state).
  cl.ops["list_names"] = [&lv, expected](int) {
    virDomainPtr* doms = nullptr;
    int k = virConnectListAllDomains(lv.conn, &doms, 0);
    for (int i = 0; i < k; ++i) {
      (void)virDomainGetName(doms[i]);
      virDomainFree(doms[i]);
    }
    free(doms);
    return k == expected;
  };
  // What `virsh list --all` does: the list, then one state call per domain (N+1 calls).
  cl.ops["list_getinfo"] = [&lv, expected](int) {
    virDomainPtr* doms = nullptr;
    int k = virConnectListAllDomains(lv.conn, &doms, 0);
    bool ok = k == expected;
    for (int i = 0; i < k; ++i) {
      virDomainInfo di;
      ok = ok && virDomainGetInfo(doms[i], &di) == 0;
      (void)virDomainGetName(doms[i]);
      virDomainFree(doms[i]);
    }
    free(doms);
    return ok;
  };
  cl.ops["get"] = [&lv, n](int) {
    if (!lv.getHandle) lv.getHandle = virDomainLookupByName(lv.conn, domName(n / 2).c_str());
    char* x = lv.getHandle ? virDomainGetXMLDesc(lv.getHandle, 0) : nullptr;
    free(x);
    return x != nullptr;
  };
  cl.ops["version"] = [&lv](int) {
    unsigned long v;
    return virConnectGetVersion(lv.conn, &v) == 0;
  };
  cl.ops["undefine"] = [&lv, n](int i) {
    if (lv.handles.empty())
      for (int k = 0; k < n; ++k) lv.handles.push_back(virDomainLookupByName(lv.conn, domName(k).c_str()));
    virDomainPtr d = lv.handles[i];
    bool ok = d && virDomainUndefine(d) == 0;
    if (d) virDomainFree(d);
    lv.handles[i] = nullptr;
    return ok;
  };
  cl.warmups["undefine"] = scratch;
  return cl;
}

// ---------------------------------------------------------------- CLI processes

bool runProcess(const std::vector<std::string>& argv) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, a[0], &fa, nullptr, a.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return false;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Large replies: reuse heap buffers instead of faulting in fresh mmap()ed pages each time.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  std::string socket, httpUrl, token, vmctl, projectsUrl, defaultToken, projectToken;
  std::vector<std::string> libvirtUris;
  int n = 1000, listPairs = 30, callPairs = 200, cliPairs = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--socket") socket = v;
    else if (k == "--http") httpUrl = v;
    else if (k == "--token") token = v;
    // A third vmmd holding N domains in the default project and N in project "bench": the same
    // calls there as an unbound admin and as an operator bound to the project.
    else if (k == "--projects-http") projectsUrl = v;
    else if (k == "--default-token") defaultToken = v;
    else if (k == "--project-token") projectToken = v;
    else if (k == "--libvirt") libvirtUris.push_back(v);
    else if (k == "--vmctl") vmctl = v;
    else if (k == "--count") n = std::stoi(v);
    else if (k == "--list-pairs") listPairs = std::stoi(v);
    else if (k == "--call-pairs") callPairs = std::stoi(v);
    else if (k == "--cli-pairs") cliPairs = std::stoi(v);
  }
  virSetErrorFunc(nullptr, silence);
  json info = json::object();
  std::vector<Client> clients;
  std::vector<std::unique_ptr<client::Connection>> conns;
  auto connect = [&](const std::string& uri, const std::string& tok) -> client::Connection* {
    client::ConnectOptions o;
    o.uri = uri;
    o.token = tok;
    auto c = client::connect(o);
    if (!c.ok()) {
      std::cerr << uri << ": " << c.error().message << "\n";
      exit(1);
    }
    conns.push_back(std::move(*c));
    return conns.back().get();
  };
  if (!socket.empty()) clients.push_back(vmmClient("vmm rpc", *connect(socket, ""), n, info));
  if (!httpUrl.empty()) clients.push_back(vmmClient("vmm http", *connect(httpUrl, token), n, info));
  if (!projectsUrl.empty()) {
    clients.push_back(vmmClient("vmm http default project", *connect(projectsUrl, defaultToken), n, info));
    clients.push_back(vmmClient("vmm http bound to a project", *connect(projectsUrl, projectToken), n, info));
  }
  std::vector<std::unique_ptr<Libvirt>> lvs;
  for (const auto& uri : libvirtUris) {
    lvs.push_back(std::make_unique<Libvirt>());
    clients.push_back(libvirtClient(uri, *lvs.back(), n, info));
  }
  // Whole processes against the daemons holding the N domains (vmm over the RPC socket).
  Client vmctlCli{"vmctl", {}, {}}, virshCli{"virsh", {}, {}};
  if (!vmctl.empty() && !socket.empty()) {
    vmctlCli.ops["cli_list"] = [&](int) { return runProcess({vmctl, "--connect", socket, "list", "--all"}); };
    vmctlCli.ops["cli_version"] = [&](int) { return runProcess({vmctl, "--connect", socket, "host", "info"}); };
    clients.push_back(vmctlCli);
  }
  for (const auto& uri : libvirtUris)
    if (uri.rfind("qemu:", 0) == 0) {
      virshCli.ops["cli_list"] = [uri](int) { return runProcess({"virsh", "-c", uri, "list", "--all"}); };
      virshCli.ops["cli_version"] = [uri](int) { return runProcess({"virsh", "-c", uri, "version"}); };
      clients.push_back(virshCli);
    }

  const std::string sameCall = "right before every timed call, the same call untimed through the same client";
  const std::string scratch =
      "right before every timed call, an untimed define and undefine of a scratch domain through the same client";
  json ops = json::object();
  // An operation no client has (e.g. libvirt's when it was not asked for) is left out.
  auto run = [&](const std::string& op, int pairs, const std::string& preceding) {
    for (const auto& c : clients)
      if (c.ops.count(op)) {
        ops[op] = runOp(op, pairs, clients, preceding);
        return;
      }
  };
  run("define", n, scratch);
  for (const char* op : {"list", "list_names", "list_state", "list_getinfo"}) run(op, listPairs, sameCall);
  run("get", callPairs, sameCall);
  run("version", callPairs, sameCall);
  run("cli_list", cliPairs, sameCall);
  run("cli_version", cliPairs, sameCall);
  run("undefine", n, scratch);
  for (auto& lv : lvs) {
    if (lv->getHandle) virDomainFree(lv->getHandle);
    if (lv->conn) virConnectClose(lv->conn);
  }
  std::cout << json{{"count", n}, {"ops", ops}, {"info", info}}.dump(1) << "\n";
  return 0;
}
