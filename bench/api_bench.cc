// API benchmark: define N domains, list them, look one up and remove them, through vmmd's
// JSON-RPC socket and HTTP API (one kept-alive connection each) and through libvirt (its API,
// for each URI given: test:///default runs in-process, qemu:///system goes through libvirtd).
// Prints one JSON document with medians.
#include <httplib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <algorithm>
#include <malloc.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/time_util.h"
#include "client/vmmclient.h"

using json = nlohmann::json;
using namespace vmm;

namespace {

double nowMs() {
  return std::chrono::duration<double, std::milli>(SteadyClock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Fn>
double medianOf(int runs, Fn fn) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    double t0 = nowMs();
    fn();
    t.push_back(nowMs() - t0);
  }
  return median(t);
}

std::string domName(int i) { return "bench" + std::to_string(i); }

json benchVmm(client::Connection& c, int n, const std::string& label) {
  json r = {{"target", label}};
  // Warm-up and clean slate.
  for (int i = 0; i < n; ++i) (void)c.call("domain.delete", {{"name", domName(i)}});
  std::vector<double> define;
  for (int i = 0; i < n; ++i) {
    json def = {{"name", domName(i)}, {"type", "test"}, {"memory", "256MiB"}, {"vcpus", 1}};
    double t0 = nowMs();
    auto res = c.call("domain.create", {{"definition", def}});
    define.push_back(nowMs() - t0);
    if (!res.ok()) {
      std::cerr << label << ": define failed: " << res.error().message << "\n";
      exit(1);
    }
  }
  r["define_ms_median"] = median(define);
  double sum = 0;
  for (double d : define) sum += d;
  r["define_ms_mean"] = sum / n;
  size_t count = 0;
  r["list_ms_median"] = medianOf(30, [&] { count = c.call("domain.list", {{"active", false}}).value().size(); });
  r["list_count"] = count;
  r["list_full_ms_median"] = medianOf(10, [&] { (void)c.call("domain.list", {{"full", true}}); });
  r["get_ms_median"] = medianOf(200, [&] { (void)c.call("domain.get", {{"name", domName(n / 2)}}); });
  r["version_ms_median"] = medianOf(200, [&] { (void)c.call("host.info"); });
  std::vector<double> undef;
  for (int i = 0; i < n; ++i) {
    double t0 = nowMs();
    (void)c.call("domain.delete", {{"name", domName(i)}});
    undef.push_back(nowMs() - t0);
  }
  r["undefine_ms_median"] = median(undef);
  return r;
}

void silence(void*, virErrorPtr) {}

json benchLibvirt(const std::string& uri, int n) {
  json r = {{"target", "libvirt " + uri}};
  virSetErrorFunc(nullptr, silence);
  virConnectPtr conn = virConnectOpen(uri.c_str());
  if (!conn) {
    r["error"] = "cannot connect";
    return r;
  }
  auto cleanup = [&] {
    for (int i = 0; i < n; ++i) {
      virDomainPtr d = virDomainLookupByName(conn, domName(i).c_str());
      if (d) {
        virDomainUndefine(d);
        virDomainFree(d);
      }
    }
  };
  cleanup();
  std::vector<double> define;
  for (int i = 0; i < n; ++i) {
    std::string type = uri.rfind("test:", 0) == 0 ? "test" : "qemu";
    std::string xml = "<domain type='" + type + "'><name>" + domName(i) +
                      "</name><memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>";
    double t0 = nowMs();
    virDomainPtr d = virDomainDefineXML(conn, xml.c_str());
    define.push_back(nowMs() - t0);
    if (!d) {
      virErrorPtr e = virGetLastError();
      r["error"] = std::string("define failed: ") + (e && e->message ? e->message : "?");
      virConnectClose(conn);
      return r;
    }
    virDomainFree(d);
  }
  r["define_ms_median"] = median(define);
  double sum = 0;
  for (double d : define) sum += d;
  r["define_ms_mean"] = sum / n;
  int count = 0;
  // The same information vmm's list returns: names and states (virsh list --all does this).
  r["list_ms_median"] = medianOf(30, [&] {
    virDomainPtr* doms = nullptr;
    count = virConnectListAllDomains(conn, &doms, 0);
    for (int i = 0; i < count; ++i) {
      virDomainInfo info;
      virDomainGetInfo(doms[i], &info);
      (void)virDomainGetName(doms[i]);
      virDomainFree(doms[i]);
    }
    free(doms);
  });
  r["list_names_only_ms_median"] = medianOf(30, [&] {
    virDomainPtr* doms = nullptr;
    int k = virConnectListAllDomains(conn, &doms, 0);
    for (int i = 0; i < k; ++i) virDomainFree(doms[i]);
    free(doms);
  });
  r["list_count"] = count;
  r["get_ms_median"] = medianOf(200, [&] {
    virDomainPtr d = virDomainLookupByName(conn, domName(n / 2).c_str());
    char* xml = virDomainGetXMLDesc(d, 0);
    free(xml);
    virDomainFree(d);
  });
  r["version_ms_median"] = medianOf(200, [&] {
    unsigned long v;
    virConnectGetVersion(conn, &v);
  });
  std::vector<double> undef;
  for (int i = 0; i < n; ++i) {
    double t0 = nowMs();
    virDomainPtr d = virDomainLookupByName(conn, domName(i).c_str());
    if (d) {
      virDomainUndefine(d);
      virDomainFree(d);
    }
    undef.push_back(nowMs() - t0);
  }
  r["undefine_ms_median"] = median(undef);
  virConnectClose(conn);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  // Large replies: reuse heap buffers instead of faulting in fresh mmap()ed pages each time.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  std::string socket, httpUrl, token;
  std::vector<std::string> libvirtUris;
  int n = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--socket") socket = v;
    else if (k == "--http") httpUrl = v;
    else if (k == "--token") token = v;
    else if (k == "--libvirt") libvirtUris.push_back(v);
    else if (k == "--count") n = std::stoi(v);
  }
  json out = {{"count", n}, {"results", json::array()}};
  if (!socket.empty()) {
    client::ConnectOptions o;
    o.uri = socket;
    auto c = client::connect(o);
    if (!c.ok()) {
      std::cerr << c.error().message << "\n";
      return 1;
    }
    out["results"].push_back(benchVmm(**c, n, "vmm rpc"));
  }
  if (!httpUrl.empty()) {
    client::ConnectOptions o;
    o.uri = httpUrl;
    o.token = token;
    auto c = client::connect(o);
    out["results"].push_back(benchVmm(**c, n, "vmm http"));
  }
  for (const auto& uri : libvirtUris) out["results"].push_back(benchLibvirt(uri, n));
  std::cout << out.dump(2) << "\n";
  return 0;
}
