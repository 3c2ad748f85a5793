#include "model/pool.h"

#include "base/random.h"
#include "base/strings.h"
#include "model/names.h"
#include "model/units.h"

namespace vmm::model {

const EnumTable<PoolType> kPoolTypes = {
    {PoolType::dir, "dir"}, {PoolType::logical, "logical"}, {PoolType::netfs, "netfs"}, {PoolType::iscsi, "iscsi"}};

Result<Pool> parsePool(const json& j) {
  Pool p;
  JsonReader r(j, "");
  r.required("name", p.name);
  r.optional("uuid", p.uuid);
  r.optionalEnum("type", p.type, kPoolTypes);
  r.optional("path", p.path);
  r.object("source", [&](JsonReader& s) {
    s.optional("host", p.source.host);
    s.optional("port", p.source.port, 0, 65535);
    s.optional("dir", p.source.dir);
    s.optional("devices", p.source.devices);
    s.optional("vg_name", p.source.vgName);
    s.optional("target", p.source.target);
    s.optional("initiator", p.source.initiator);
    s.optional("username", p.source.username);
    s.optional("secret", p.source.secret);
  });
  r.optional("autostart", p.autostart);
  r.optional("labels", p.labels);
  VMM_TRY(r.finish());
  if (auto st = validateName(p.name, "pool name"); !st.ok()) return st.error().wrap("name");
  if (p.uuid.empty()) p.uuid = newUuid();
  else if (!isUuid(p.uuid)) return invalidArgument("uuid: " + quote(p.uuid) + " is not a UUID");
  for (const auto& [k, v] : p.labels)
    if (auto st = validateLabel(k, v); !st.ok()) return st.error().wrap("labels");
  const auto& s = p.source;
  auto hostOk = [](const std::string& h) {
    if (h.empty() || h.size() > 253) return false;
    for (char c : h)
      if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':') return false;
    return true;
  };
  switch (p.type) {
    case PoolType::dir:
      if (p.path.empty()) return invalidArgument("path: required for a dir pool");
      break;
    case PoolType::logical:
      if (s.devices.empty() && s.vgName.empty())
        return invalidArgument("source.devices: a logical pool needs its physical volumes (or an existing source.vg_name)");
      for (size_t i = 0; i < s.devices.size(); ++i)
        if (auto st = validateAbsolutePath(s.devices[i], "device"); !st.ok())
          return st.error().wrap("source.devices[" + std::to_string(i) + "]");
      break;
    case PoolType::netfs:
      if (!hostOk(s.host)) return invalidArgument("source.host: a netfs pool needs the NFS server's address");
      if (auto st = validateAbsolutePath(s.dir, "source.dir"); !st.ok()) return st.error();
      break;
    case PoolType::iscsi:
      if (!hostOk(s.host)) return invalidArgument("source.host: an iscsi pool needs the portal address");
      if (!startsWith(s.target, "iqn.") && !startsWith(s.target, "eui."))
        return invalidArgument("source.target: expected a target IQN like \"iqn.2026-01.org.example:disks\"");
      if (s.username.empty() != s.secret.empty())
        return invalidArgument("source: CHAP needs both \"username\" and \"secret\"");
      break;
  }
  if (!p.path.empty()) {
    if (auto st = validateAbsolutePath(p.path, "path"); !st.ok()) return st.error();
  }
  if (!s.vgName.empty()) {
    if (auto st = validateName(s.vgName, "volume group name"); !st.ok()) return st.error().wrap("source.vg_name");
  }
  return p;
}

json formatPool(const Pool& p, bool redactSecrets) {
  json src = json::object();
  const auto& s = p.source;
  if (!s.host.empty()) src["host"] = s.host;
  if (s.port) src["port"] = s.port;
  if (!s.dir.empty()) src["dir"] = s.dir;
  if (!s.devices.empty()) src["devices"] = s.devices;
  if (!s.vgName.empty()) src["vg_name"] = s.vgName;
  if (!s.target.empty()) src["target"] = s.target;
  if (!s.initiator.empty()) src["initiator"] = s.initiator;
  if (!s.username.empty()) src["username"] = s.username;
  if (!s.secret.empty()) src["secret"] = redactSecrets ? std::string("********") : s.secret;
  json j = {{"name", p.name}, {"uuid", p.uuid}, {"type", enumName(kPoolTypes, p.type)}};
  if (!p.path.empty()) j["path"] = p.path;
  j["source"] = src;
  j["autostart"] = p.autostart;
  j["labels"] = p.labels;
  return j;
}

Result<VolumeSpec> parseVolumeSpec(const json& in) {
  VolumeSpec v;
  // "dir" is a volume format but not a disk format: taken out before the disk format is read.
  json j = in;
  if (j.is_object() && j.contains("format") && j["format"] == "dir") {
    v.directory = true;
    j.erase("format");
  }
  JsonReader r(j, "");
  r.required("name", v.name);
  r.optionalSize("capacity", v.capacity);
  r.optionalEnum("format", v.format, kDiskFormats);
  r.optional("backing_volume", v.backingVolume);
  r.optional("preallocate", v.preallocate);
  r.optional("from_tar", v.fromTar);
  VMM_TRY(r.finish());
  if (auto st = validateVolumeName(v.name); !st.ok()) return st.error().wrap("name");
  if (!v.fromTar.empty() && !v.directory) return invalidArgument("from_tar: only a volume of format \"dir\" is unpacked from a tarball");
  if (v.directory) {
    if (!v.backingVolume.empty()) return invalidArgument("backing_volume: a directory volume cannot be a linked clone (clone it instead)");
    if (v.capacity || v.preallocate) return invalidArgument("capacity: a directory volume has no fixed size");
    if (!v.fromTar.empty())
      if (auto st = validateAbsolutePath(v.fromTar, "from_tar"); !st.ok()) return st.error();
    return v;
  }
  if (v.backingVolume.empty() && v.capacity == 0) return invalidArgument("capacity: must be greater than 0");
  if (!v.backingVolume.empty()) {
    if (auto st = validateVolumeName(v.backingVolume); !st.ok()) return st.error().wrap("backing_volume");
    if (v.format != DiskFormat::qcow2) return invalidArgument("format: a linked clone must be qcow2");
  }
  return v;
}

json formatVolume(const Volume& v) {
  json j = {{"name", v.name},
            {"pool", v.pool},
            {"format", v.directory ? std::string_view("dir") : enumName(kDiskFormats, v.format)},
            {"capacity", v.capacity},
            {"allocation", v.allocation},
            {"path", v.path}};
  if (!v.backingVolume.empty()) j["backing_volume"] = v.backingVolume;
  if (!v.refused.empty()) j["refused"] = v.refused;
  j["used_by"] = v.usedBy;
  return j;
}

}  // namespace vmm::model
