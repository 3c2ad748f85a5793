#include "daemon/first_boot.h"

#include "model/json_reader.h"

namespace vmm {

using json = nlohmann::json;

Result<customize::CloudInitSpec> cloudInitFromJson(const json& j) {
  customize::CloudInitSpec s;
  model::JsonReader r(j, "cloud_init");
  r.optional("instance_id", s.instanceId);
  r.optional("hostname", s.hostname);
  r.optional("include_default_user", s.includeDefaultUser);
  r.optional("ssh_authorized_keys", s.sshAuthorizedKeys);
  r.objectArray("users", 64, [&](model::JsonReader& u, size_t) {
    customize::CloudUser user;
    u.required("name", user.name);
    u.optional("ssh_authorized_keys", user.sshAuthorizedKeys);
    u.optional("sudo", user.sudo);
    u.optional("shell", user.shell);
    u.optional("groups", user.groups);
    u.optional("lock_password", user.lockPassword);
    s.users.push_back(user);
  });
  r.optional("packages", s.packages);
  r.optional("package_update", s.packageUpdate);
  r.optional("runcmd", s.runcmd);
  r.objectArray("write_files", 256, [&](model::JsonReader& f, size_t) {
    customize::CloudWriteFile file;
    f.required("path", file.path);
    f.optional("content", file.content);
    f.optional("permissions", file.permissions);
    f.optional("owner", file.owner);
    f.optional("append", file.append);
    f.optional("defer", file.defer);
    s.writeFiles.push_back(file);
  });
  r.optional("user_data", s.userDataOverride);
  r.optional("network_config", s.networkConfigOverride);
  r.objectArray("interfaces", 32, [&](model::JsonReader& n, size_t) {
    customize::CloudInterface nic;
    n.required("id", nic.id);
    n.optional("mac", nic.macAddress);
    n.optional("dhcp4", nic.dhcp4);
    n.optional("dhcp6", nic.dhcp6);
    n.optional("addresses", nic.addresses);
    n.optional("gateway4", nic.gateway4);
    n.optional("gateway6", nic.gateway6);
    n.optional("nameservers", nic.nameservers);
    n.optional("search", nic.searchDomains);
    s.interfaces.push_back(nic);
  });
  r.optional("meta_data", s.extraMetaData);
  VMM_TRY(r.finish());
  // Rendering validates every field (names, keys, quoting) without side effects.
  VMM_TRY(customize::renderNoCloudSeed(s));
  return s;
}

Result<customize::CustomizeSpec> customizeFromJson(const json& j) {
  customize::CustomizeSpec s;
  model::JsonReader r(j, "customize");
  r.optional("format", s.format);
  r.objectArray("files", 256, [&](model::JsonReader& f, size_t) {
    customize::InjectedFile file;
    f.required("path", file.path);
    f.optional("content", file.content);
    int64_t mode = 0644;
    f.optional("mode", mode, 0, 07777);
    file.mode = static_cast<uint32_t>(mode);
    f.optional("owner", file.owner);
    s.files.push_back(file);
  });
  r.objectArray("ssh_keys", 64, [&](model::JsonReader& k, size_t) {
    customize::AuthorizedKeys keys;
    k.optional("user", keys.user);
    k.optional("keys", keys.keys);
    s.sshKeys.push_back(keys);
  });
  r.optional("hostname", s.hostname);
  r.optional("run", s.commands);
  VMM_TRY(r.finish());
  VMM_TRY(customize::validateCustomizeSpec(s));
  return s;
}

}  // namespace vmm
