// The model's JSON parsers (what API clients and the state store hand to vmmd). Input: one
// letter choosing the parser, then the JSON text. For every accepted document:
// - the formatted result parses again, and formats to the same JSON (a stable round trip);
// - names obey their charset and host paths are absolute without "..", interface and bridge
//   names are safe on tools' command lines;
// - formatting never throws (dumpJson and the strict dump).
#include "base/json_util.h"
#include "base/strings.h"
#include "fuzz/fuzz_util.h"
#include "model/domain.h"
#include "model/image.h"
#include "model/names.h"
#include "model/network.h"
#include "model/operation.h"
#include "model/pool.h"
#include "model/project.h"
#include "model/snapshot.h"

using namespace vmm;
using namespace vmm::model;
using json = nlohmann::json;

namespace {

void nameOk(const std::string& name, const char* what) {
  FUZZ_CHECK(validateName(name, what).ok(), std::string(what) + " " + fuzz::show(name) + " accepted");
}
void pathOk(const std::string& path, const char* what) {
  if (path.empty()) return;
  FUZZ_CHECK(validateAbsolutePath(path, what).ok(), std::string(what) + " " + fuzz::show(path) + " accepted");
}
void ifnameOk(const std::string& name, const char* what) {
  if (name.empty()) return;
  FUZZ_CHECK(validateIfName(name).ok(), std::string(what) + " " + fuzz::show(name) + " accepted");
  FUZZ_CHECK(name.find_first_of(",:/\"'; $\n\\") == std::string::npos, std::string(what) + " " + fuzz::show(name) + " accepted");
}

// format(parse(format(x))) == format(x), and neither dump throws.
template <typename T, typename Parse, typename Format>
void roundTrip(const T& first, Parse parse, Format format, const char* what) {
  json f1 = format(first);
  std::string text = dumpJson(f1);
  (void)f1.dump();  // strict: throws on invalid UTF-8
  auto again = parse(f1);
  FUZZ_CHECK(again.ok(), std::string(what) + ": formatted result refused: " + (again.ok() ? "" : again.error().message) +
                             "\n  " + text.substr(0, 2000));
  json f2 = format(*again);
  FUZZ_CHECK(f1 == f2, std::string(what) + ": round trip changed " + fuzz::firstDifference(text, dumpJson(f2)));
}

// A name vmmd keeps (plain, or qualified by its project): still of a plain name's characters
// and length, so safe wherever a plain name goes.
void qualifiedNameOk(const std::string& name, const char* what) {
  FUZZ_CHECK(validateQualifiedName(name, what).ok(), std::string(what) + " " + fuzz::show(name) + " accepted");
  FUZZ_CHECK(name.size() <= kMaxNameLength && name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == std::string::npos,
             std::string(what) + " " + fuzz::show(name) + " accepted");
}

void checkDomain(const Domain& d) {
  qualifiedNameOk(d.name, "domain name");
  pathOk(d.boot.kernel, "boot.kernel");
  pathOk(d.boot.initrd, "boot.initrd");
  for (const auto& disk : d.disks) {
    pathOk(disk.source.path, "disk path");
    if (!disk.source.pool.empty()) nameOk(disk.source.pool, "disk pool");
    if (!disk.source.volume.empty())
      FUZZ_CHECK(validateQualifiedVolumeName(disk.source.volume).ok(), "disk volume " + fuzz::show(disk.source.volume));
  }
  for (const auto& nic : d.nics) {
    ifnameOk(nic.ifname, "nic ifname");
    ifnameOk(nic.bridge, "nic bridge");
    ifnameOk(nic.device, "nic device");
    if (!nic.network.empty()) nameOk(nic.network, "nic network");
    if (!nic.mac.empty()) FUZZ_CHECK(normalizeMac(nic.mac).ok() && *normalizeMac(nic.mac) == nic.mac, "nic mac " + fuzz::show(nic.mac));
  }
  if (d.container) {
    pathOk(d.container->rootfs.path, "rootfs path");
    for (const auto& m : d.container->mounts) {
      pathOk(m.source, "mount source");
      pathOk(m.target, "mount target");
    }
  }
  FUZZ_CHECK(d.vcpus >= 1 && d.vcpus <= DomainLimits::kMaxVcpus, "vcpus");
  FUZZ_CHECK(d.disks.size() <= DomainLimits::kMaxDisks && d.nics.size() <= DomainLimits::kMaxNics, "counts");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 256 << 10) return 0;
  char which = static_cast<char>(data[0]);
  auto doc = parseJson(fuzz::bytes(data + 1, size - 1), 1 << 20);
  if (!doc.ok()) return 0;
  const json& j = *doc;
  switch (which) {
    case 'd': {
      auto d = parseDomain(j);
      if (!d.ok()) break;
      checkDomain(*d);
      roundTrip(*d, [](const json& x) { return parseDomain(x); }, [](const Domain& x) { return formatDomain(x, false); }, "domain");
      (void)dumpJson(formatDomain(*d));
      break;
    }
    case 'n': {
      auto n = parseNetwork(j);
      if (!n.ok()) break;
      nameOk(n->name, "network name");
      ifnameOk(n->bridge, "network bridge");
      ifnameOk(n->uplink, "network uplink");
      FUZZ_CHECK(n->domain.find_first_of(",/\"' \n") == std::string::npos, "network dns domain " + fuzz::show(n->domain));
      roundTrip(*n, [](const json& x) { return parseNetwork(x); }, [](const Network& x) { return formatNetwork(x); }, "network");
      break;
    }
    case 'p': {
      auto p = parsePool(j);
      if (!p.ok()) break;
      nameOk(p->name, "pool name");
      if (p->type == PoolType::dir) pathOk(p->path, "pool path");
      roundTrip(*p, [](const json& x) { return parsePool(x); }, [](const Pool& x) { return formatPool(x, false); }, "pool");
      break;
    }
    case 'v': {
      auto v = parseVolumeSpec(j);
      if (!v.ok()) break;
      FUZZ_CHECK(validateVolumeName(v->name).ok(), "volume name " + fuzz::show(v->name));
      if (!v->backingVolume.empty()) FUZZ_CHECK(validateVolumeName(v->backingVolume).ok(), "backing volume");
      pathOk(v->fromTar, "from_tar");
      break;
    }
    case 'i': {
      auto i = parseImageRecord(j);
      if (!i.ok()) break;
      FUZZ_CHECK(validateImageName(i->name).ok(), "image name " + fuzz::show(i->name));
      roundTrip(*i, [](const json& x) { return parseImageRecord(x); }, [](const Image& x) { return formatImage(x); }, "image");
      break;
    }
    case 'I': {
      auto i = parseImageImportSpec(j);
      if (!i.ok()) break;
      FUZZ_CHECK(validateImageName(i->name).ok(), "image name " + fuzz::show(i->name));
      pathOk(i->file, "image file");
      pathOk(i->kernelFile, "image kernel");
      pathOk(i->initrdFile, "image initrd");
      break;
    }
    case 'l': {
      auto l = parseLaunchSpec(j);
      if (!l.ok()) break;
      if (!l->name.empty()) nameOk(l->name, "launch name");
      for (const auto& n : l->networks) nameOk(n, "launch network");
      FUZZ_CHECK(l->ttlMs >= 0, "negative ttl");
      break;
    }
    case 't': (void)validateDomainTemplate(j, size % 2); break;
    case 'o': {
      auto o = parseOperationRecord(j);
      if (!o.ok()) break;
      roundTrip(*o, [](const json& x) { return parseOperationRecord(x); }, [](const Operation& x) { return formatOperation(x); }, "operation");
      break;
    }
    case 'e': {
      auto e = parseEvent(j);
      if (!e.ok()) break;
      roundTrip(*e, [](const json& x) { return parseEvent(x); }, [](const Event& x) { return formatEvent(x); }, "event");
      break;
    }
    case 's': {
      auto s = parseSnapshotSpec(j);
      if (s.ok() && !s->name.empty()) nameOk(s->name, "snapshot name");  // absent: a timestamp
      auto r = parseSnapshotRecord(j);
      if (!r.ok()) break;
      nameOk(r->name, "snapshot name");
      roundTrip(*r, [](const json& x) { return parseSnapshotRecord(x); }, [](const Snapshot& x) { return formatSnapshot(x); }, "snapshot");
      break;
    }
    case 'J': {
      auto p = parseProject(j);
      if (!p.ok()) break;
      FUZZ_CHECK(validateProjectName(p->name).ok(), "project name " + fuzz::show(p->name));
      FUZZ_CHECK(p->name != kDefaultProject || !p->restrictions.restricted, "a restricted default project");
      roundTrip(*p, [](const json& x) { return parseProject(x); }, [](const Project& x) { return formatProject(x); }, "project");
      if (j.contains("changes")) {
        auto merged = mergeProject(*p, j["changes"]);
        if (merged.ok()) FUZZ_CHECK(merged->name == p->name, "a merge renamed the project");
      }
      break;
    }
    case 'q': {
      // Names of a project: qualified and back, and rewriting replies never throws.
      for (const std::string project : {"ci", "a-1"}) {
        json copy = j;
        unqualifyJson(copy, project);
        (void)dumpJson(copy);
        if (!j.is_string()) continue;
        const std::string& name = j.get_ref<const std::string&>();
        (void)projectOfObject(name);
        (void)unqualifyText(name, project);
        if (!validateScopedName(project, name, "name").ok()) continue;
        std::string q = qualifyName(project, name);
        qualifiedNameOk(q, "qualified name");
        FUZZ_CHECK(projectOf(q) == project && unqualifyName(q) == name, "qualified name " + fuzz::show(q) + " does not split back");
        FUZZ_CHECK(projectOf(name) == kDefaultProject, "plain name " + fuzz::show(name) + " read as another project's");
      }
      break;
    }
    default: break;
  }
  return 0;
}
