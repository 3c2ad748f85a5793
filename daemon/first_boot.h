// The JSON forms of first-boot configuration in launch requests: a cloud-init seed and an
// offline customisation of the disk, read into storage/customize's parameter structs.
#pragma once

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "storage/customize/cloud_init.h"
#include "storage/customize/customize_spec.h"

namespace vmm {

// {"hostname", "instance_id", "ssh_authorized_keys": [...], "users": [{"name", "ssh_authorized_keys",
//  "sudo", "shell", "groups", "lock_password"}], "packages", "package_update", "runcmd",
//  "write_files": [{"path", "content", "permissions", "owner", "append", "defer"}],
//  "user_data" (raw), "network_config" (raw), "interfaces": [{"id", "mac", "dhcp4", "dhcp6",
//  "addresses", "gateway4", "gateway6", "nameservers", "search"}], "meta_data": {...}}
Result<customize::CloudInitSpec> cloudInitFromJson(const nlohmann::json& j);

// {"format", "files": [{"path", "content", "mode", "owner"}], "ssh_keys": [{"user", "keys"}],
//  "hostname", "run": [...]}
Result<customize::CustomizeSpec> customizeFromJson(const nlohmann::json& j);

}  // namespace vmm
