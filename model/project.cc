#include "model/project.h"

#include <algorithm>

#include "base/strings.h"
#include "base/time_util.h"
#include "model/names.h"

namespace vmm::model {

Status validateProjectName(std::string_view name) {
  if (name.empty() || name.size() > kMaxProjectNameLength)
    return invalidArgument("project name " + quote(name.substr(0, 20)) + " must be 1-" + std::to_string(kMaxProjectNameLength) +
                           " characters");
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0);
    if (!ok) return invalidArgument("project name " + quote(name) + ": only a-z, 0-9 and '-' (not first) are allowed");
  }
  // The project's names begin "_<project>_": LVM refuses logical volumes whose names hold
  // "_cdata", "_mlog" and the like, so no project may begin with one of those words.
  for (std::string_view word : {"cdata", "cmeta", "corig", "cpool", "cvol", "iorig", "mimage", "mlog", "pmspare", "rimage", "rmeta",
                                "tdata", "tmeta", "vdata", "vorigin", "wcorig"})
    if (name.substr(0, word.size()) == word)
      return invalidArgument("project name " + quote(name) + " begins with " + quote(word) + ", a word LVM reserves in volume names");
  return {};
}

std::string qualifyName(std::string_view project, std::string_view name) {
  if (project.empty() || project == kDefaultProject) return std::string(name);
  std::string out;
  out.reserve(project.size() + name.size() + 2);
  out += '_';
  out += project;
  out += '_';
  out += name;
  return out;
}

namespace {
// The position of the separator after the project in a qualified name (npos: a plain name).
size_t separatorOf(std::string_view qualified) {
  if (qualified.size() < 3 || qualified[0] != '_') return std::string_view::npos;
  size_t end = qualified.find('_', 1);
  return end == std::string_view::npos || end == 1 || end + 1 >= qualified.size() ? std::string_view::npos : end;
}
}  // namespace

std::string_view projectOf(std::string_view qualified) {
  size_t sep = separatorOf(qualified);
  return sep == std::string_view::npos ? kDefaultProject : qualified.substr(1, sep - 1);
}

std::string_view unqualifyName(std::string_view qualified) {
  size_t sep = separatorOf(qualified);
  return sep == std::string_view::npos ? qualified : qualified.substr(sep + 1);
}

bool inProject(std::string_view qualified, std::string_view project) { return projectOf(qualified) == project; }

Status validateScopedName(std::string_view project, std::string_view name, std::string_view what) {
  VMM_TRY(validateName(name, what));
  std::string q = qualifyName(project, name);
  if (q.size() > kMaxNameLength)
    return invalidArgument(std::string(what) + " " + quote(name) + " is too long for project " + std::string(project) + ": at most " +
                           std::to_string(kMaxNameLength - (q.size() - name.size())) + " characters there");
  return {};
}

Status validateQualifiedName(std::string_view name, std::string_view what) {
  size_t sep = separatorOf(name);
  if (sep == std::string_view::npos) return validateName(name, what);
  VMM_TRY(validateProjectName(name.substr(1, sep - 1)));
  if (name.size() > kMaxNameLength)
    return invalidArgument(std::string(what) + " " + quote(name.substr(0, 20)) + "... is longer than " + std::to_string(kMaxNameLength) +
                           " characters");
  return validateName(name.substr(sep + 1), what);
}

Status validateQualifiedVolumeName(std::string_view name) {
  size_t sep = separatorOf(name);
  if (sep == std::string_view::npos) return validateVolumeName(name);
  VMM_TRY(validateProjectName(name.substr(1, sep - 1)));
  return validateVolumeName(name.substr(sep + 1));
}

std::string unqualifyText(std::string_view text, std::string_view project) {
  if (project.empty() || project == kDefaultProject) return std::string(text);
  std::string prefix = "_" + std::string(project) + "_";
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t at = text.find(prefix, i);
    if (at == std::string_view::npos) break;
    // Only at the start of a name: not inside another word ("a_ci_b").
    char before = at == 0 ? ' ' : text[at - 1];
    bool wordStart = !((before >= 'a' && before <= 'z') || (before >= 'A' && before <= 'Z') || (before >= '0' && before <= '9') ||
                       before == '_' || before == '-' || before == '.');
    out.append(text.substr(i, at - i));
    if (!wordStart) out.append(prefix);
    i = at + prefix.size();
  }
  out.append(text.substr(i));
  return out;
}

namespace {
bool carriesNames(std::string_view key) {
  for (std::string_view k : {"name", "domain", "object", "volume", "backing_volume", "image", "used_by", "message", "error",
                             "vmm.image", "target", "source_volume", "domains", "volumes", "launched_from"})
    if (key == k) return true;
  return false;
}

void unqualifyValue(json& v, std::string_view project) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.find('_') != std::string::npos) v = unqualifyText(s, project);
  } else if (v.is_array()) {
    for (auto& item : v)
      if (item.is_string()) unqualifyValue(item, project);
      else unqualifyJson(item, project);
  } else if (v.is_object()) {
    unqualifyJson(v, project);
  }
}
}  // namespace

void unqualifyJson(json& j, std::string_view project) {
  if (project.empty() || project == kDefaultProject) return;
  if (j.is_array()) {
    for (auto& item : j) unqualifyJson(item, project);
    return;
  }
  if (!j.is_object()) return;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it->is_string() || (it->is_array() && carriesNames(it.key()))) {
      if (carriesNames(it.key())) unqualifyValue(*it, project);
    } else if (it->is_structured()) {
      unqualifyJson(*it, project);
    }
  }
}

std::string_view projectOfObject(std::string_view object) {
  size_t i = 0;
  while (i <= object.size()) {
    size_t end = object.find('/', i);
    if (end == std::string_view::npos) end = object.size();
    std::string_view seg = object.substr(i, end - i);
    if (std::string_view p = projectOf(seg); p != kDefaultProject) return p;
    i = end + 1;
  }
  return kDefaultProject;
}

std::string qualifyObject(std::string_view object, std::string_view project) {
  if (project.empty() || project == kDefaultProject) return std::string(object);
  std::string out;
  bool nameNext = false;
  size_t i = 0;
  while (i <= object.size()) {
    size_t end = object.find('/', i);
    if (end == std::string_view::npos) end = object.size();
    std::string_view seg = object.substr(i, end - i);
    if (!out.empty() || i > 0) out += '/';
    out += nameNext ? qualifyName(project, seg) : std::string(seg);
    nameNext = seg == "domains" || seg == "volumes" || seg == "images";
    i = end + 1;
  }
  return out;
}

Domain withBridgesAllowed(const Domain& d, const std::vector<std::string>& allowedBridges) {
  Domain probe = d;
  for (auto& n : probe.nics) {
    if (n.type != NicType::bridge || std::find(allowedBridges.begin(), allowedBridges.end(), n.bridge) == allowedBridges.end()) continue;
    n.type = NicType::network;
    n.network = "allowed-bridge";
    n.bridge.clear();
  }
  return probe;
}

bool allowedBy(const std::vector<std::string>& list, std::string_view name) {
  if (list.empty()) return true;
  for (const auto& n : list)
    if (n == name) return true;
  return false;
}

namespace {

constexpr size_t kMaxListed = 256;

void readNames(JsonReader& r, std::string_view key, std::vector<std::string>& out) {
  r.array(key, kMaxListed, [&out](const json& item, size_t) -> std::string {
    if (!item.is_string()) return "expected a name, got " + jsonTypeName(item);
    auto st = validateName(item.get<std::string>(), "name");
    if (!st.ok()) return st.error().message;
    out.push_back(item.get<std::string>());
    return "";
  });
}

template <typename T>
void readLimit(JsonReader& r, std::string_view key, std::optional<T>& out, bool size) {
  if (!r.has(key)) return r.accept(key);
  if constexpr (std::is_same_v<T, uint64_t>) {
    if (size) {
      uint64_t v = 0;
      r.optionalSize(key, v);
      out = v;
      return;
    }
  }
  int64_t v = 0;
  r.optional(key, v, 0, 1LL << 40);
  out = static_cast<T>(v);
}

}  // namespace

Result<Project> parseProject(const json& j) {
  Project p;
  JsonReader r(j, "");
  r.required("name", p.name);
  r.optional("description", p.description);
  if (r.ok()) {
    if (auto st = validateProjectName(p.name); !st.ok()) r.fail("name", st.error().message);
  }
  if (p.description.size() > 1024) r.fail("description", "longer than 1024 characters");
  for (char c : p.description)
    if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') r.fail("description", "contains control characters");
  // The default project holds what vmm had before projects existed: host-wide, unrestricted.
  p.restrictions.restricted = p.name != kDefaultProject;
  r.object("restrictions", [&](JsonReader& rr) {
    rr.optional("restricted", p.restrictions.restricted);
    readNames(rr, "pools", p.restrictions.pools);
    readNames(rr, "networks", p.restrictions.networks);
    readNames(rr, "images", p.restrictions.images);
    rr.array("bridges", kMaxListed, [&p](const json& item, size_t) -> std::string {
      if (!item.is_string()) return "expected a bridge name, got " + jsonTypeName(item);
      auto st = validateIfName(item.get<std::string>());
      if (!st.ok()) return st.error().message;
      p.restrictions.bridges.push_back(item.get<std::string>());
      return "";
    });
  });
  r.object("limits", [&](JsonReader& lr) {
    readLimit(lr, "domains", p.limits.domains, false);
    readLimit(lr, "vcpus", p.limits.vcpus, false);
    readLimit(lr, "memory", p.limits.memory, true);
    readLimit(lr, "disk", p.limits.disk, true);
    readLimit(lr, "running", p.limits.running, false);
  });
  std::string created;
  r.optional("created", created);
  VMM_TRY(r.finish());
  if (!created.empty()) p.createdUs = parseTimestamp(created).value_or(0);
  if (p.name == kDefaultProject && p.restrictions.restricted)
    return invalidArgument("restrictions.restricted: the default project holds the host's own objects and cannot be restricted");
  return p;
}

json formatProject(const Project& p) {
  json limits = json::object();
  auto put = [&](const char* key, const auto& v) {
    if (v) limits[key] = *v;
  };
  put("domains", p.limits.domains);
  put("vcpus", p.limits.vcpus);
  put("memory", p.limits.memory);
  put("disk", p.limits.disk);
  put("running", p.limits.running);
  json out = {{"name", p.name},
              {"description", p.description},
              {"restrictions",
               {{"restricted", p.restrictions.restricted},
                {"pools", p.restrictions.pools},
                {"networks", p.restrictions.networks},
                {"images", p.restrictions.images},
                {"bridges", p.restrictions.bridges}}},
              {"limits", limits}};
  if (p.createdUs) out["created"] = formatTimestamp(p.createdUs);
  return out;
}

Result<Project> mergeProject(const Project& p, const json& changes) {
  if (!changes.is_object()) return invalidArgument("changes: expected an object, got " + jsonTypeName(changes));
  json merged = formatProject(p);
  for (auto it = changes.begin(); it != changes.end(); ++it) {
    const std::string& key = it.key();
    if (key == "name" || key == "created") return invalidArgument(key + ": cannot be changed");
    if ((key == "restrictions" || key == "limits") && it->is_object()) {
      for (auto f = it->begin(); f != it->end(); ++f) {
        if (f->is_null()) merged[key].erase(f.key());
        else merged[key][f.key()] = *f;
      }
      continue;
    }
    merged[key] = *it;
  }
  VMM_ASSIGN(auto out, parseProject(merged));
  out.createdUs = p.createdUs;
  return out;
}

}  // namespace vmm::model
