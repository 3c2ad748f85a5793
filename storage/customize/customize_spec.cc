#include "storage/customize/customize_spec.h"

#include "storage/customize/cloud_init.h"

#include <nlohmann/json.hpp>

#include "base/base64.h"
#include "base/json_util.h"
#include "base/strings.h"

namespace vmm::customize {

namespace {

using nlohmann::json;

bool oneLine(std::string_view s) { return s.find_first_of("\r\n") == std::string_view::npos; }


bool isName(std::string_view n) {
  if (n.empty() || n.size() > 32) return false;
  for (char c : n)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  return true;
}

bool isGuestPath(std::string_view p) {
  if (p.size() < 2 || p[0] != '/' || p.size() > 4096 || p.find('\0') != std::string_view::npos) return false;
  for (const auto& part : split(p, '/', true))
    if (part == "..") return false;
  return true;
}

// A request carries injected files (base64); a reply carries command outputs.
constexpr size_t kMaxMessageBytes = 256 << 20;

template <typename T>
Result<T> field(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return invalidArgument(std::string("customize request: field ") + key + " has the wrong type");
  }
}

}  // namespace

Status validateCustomizeSpec(const CustomizeSpec& spec) {
  if (!spec.format.empty() && spec.format != "raw" && spec.format != "qcow2")
    return invalidArgument("format must be raw or qcow2, not " + quote(spec.format));
  for (const auto& f : spec.files) {
    if (!isGuestPath(f.path)) return invalidArgument("file path must be absolute without '..': " + quote(f.path));
    if (f.mode > 07777) return invalidArgument("file " + f.path + ": mode must be at most 07777");
    if (!f.owner.empty()) {
      auto parts = split(f.owner, ':');
      if (parts.size() > 2 || !isName(parts[0]) || (parts.size() == 2 && !isName(parts[1])))
        return invalidArgument("file " + f.path + ": owner must be user[:group] or uid[:gid], not " + quote(f.owner));
    }
  }
  for (const auto& k : spec.sshKeys) {
    if (!isName(k.user)) return invalidArgument("ssh keys: invalid user " + quote(k.user));
    if (k.keys.empty()) return invalidArgument("ssh keys for " + k.user + ": no key given");
    for (const auto& key : k.keys)
      if (key.empty() || !oneLine(key)) return invalidArgument("ssh keys for " + k.user + ": a key must be one non-empty line");
  }
  if (!spec.hostname.empty() && !isHostname(spec.hostname)) return invalidArgument("invalid hostname " + quote(spec.hostname));
  for (const auto& c : spec.commands)
    if (c.empty()) return invalidArgument("empty command");
  return okStatus();
}

std::string customizeRequestToJson(const std::string& imagePath, const CustomizeSpec& spec) {
  json files = json::array();
  for (const auto& f : spec.files)
    files.push_back({{"path", f.path}, {"content_base64", base64Encode(f.content)}, {"mode", f.mode}, {"owner", f.owner}});
  json keys = json::array();
  for (const auto& k : spec.sshKeys) keys.push_back({{"user", k.user}, {"keys", k.keys}});
  json j = {{"image", imagePath}, {"format", spec.format},     {"files", files},
            {"ssh_keys", keys},   {"hostname", spec.hostname}, {"commands", spec.commands}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::pair<std::string, CustomizeSpec>> customizeRequestFromJson(std::string_view text) {
  auto parsed = parseJson(text, kMaxMessageBytes);
  if (!parsed.ok() || !parsed->is_object()) return invalidArgument("customize request: not a JSON object");
  const json& j = *parsed;
  CustomizeSpec spec;
  VMM_ASSIGN(std::string image, field<std::string>(j, "image", ""));
  if (image.empty()) return invalidArgument("customize request: no image");
  VMM_ASSIGN(spec.format, field<std::string>(j, "format", ""));
  VMM_ASSIGN(spec.hostname, field<std::string>(j, "hostname", ""));
  VMM_ASSIGN(spec.commands, field<std::vector<std::string>>(j, "commands", {}));
  VMM_ASSIGN(json files, field<json>(j, "files", json::array()));
  VMM_ASSIGN(json keys, field<json>(j, "ssh_keys", json::array()));
  if (!files.is_array() || !keys.is_array()) return invalidArgument("customize request: files and ssh_keys must be arrays");
  for (const auto& f : files) {
    InjectedFile file;
    VMM_ASSIGN(file.path, field<std::string>(f, "path", ""));
    VMM_ASSIGN(std::string content, field<std::string>(f, "content_base64", ""));
    VMM_ASSIGN(file.content, base64Decode(content));
    VMM_ASSIGN(file.mode, field<uint32_t>(f, "mode", 0644));
    VMM_ASSIGN(file.owner, field<std::string>(f, "owner", ""));
    spec.files.push_back(std::move(file));
  }
  for (const auto& k : keys) {
    AuthorizedKeys a;
    VMM_ASSIGN(a.user, field<std::string>(k, "user", "root"));
    VMM_ASSIGN(a.keys, field<std::vector<std::string>>(k, "keys", {}));
    spec.sshKeys.push_back(std::move(a));
  }
  VMM_TRY(validateCustomizeSpec(spec));
  return std::make_pair(std::move(image), std::move(spec));
}

std::string customizeReplyToJson(const Result<CustomizeReport>& result) {
  json j;
  if (result.ok()) {
    const auto& r = *result;
    j = {{"ok", true},
         {"report",
          {{"root_device", r.rootDevice}, {"os_type", r.osType}, {"distro", r.distro}, {"launch_ms", r.launchMillis},
           {"total_ms", r.totalMillis}, {"command_outputs", r.commandOutputs}}}};
  } else {
    j = {{"ok", false}, {"code", std::string(errorCodeName(result.error().code))}, {"error", result.error().message}};
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<CustomizeReport> customizeReplyFromJson(std::string_view text) {
  // Command outputs from inside the image come back in the reply: parsed with the usual caps.
  auto parsed = parseJson(text, kMaxMessageBytes);
  if (!parsed.ok() || !parsed->is_object()) return internalError("vmm-customize gave no reply");
  const json& j = *parsed;
  VMM_ASSIGN(bool ok, field<bool>(j, "ok", false));
  if (!ok) {
    VMM_ASSIGN(std::string code, field<std::string>(j, "code", "internal"));
    VMM_ASSIGN(std::string message, field<std::string>(j, "error", "vmm-customize failed"));
    return Error{errorCodeFromName(code).value_or(ErrorCode::internal), message};
  }
  VMM_ASSIGN(json r, field<json>(j, "report", json::object()));
  CustomizeReport rep;
  VMM_ASSIGN(rep.rootDevice, field<std::string>(r, "root_device", ""));
  VMM_ASSIGN(rep.osType, field<std::string>(r, "os_type", ""));
  VMM_ASSIGN(rep.distro, field<std::string>(r, "distro", ""));
  VMM_ASSIGN(rep.launchMillis, field<int64_t>(r, "launch_ms", 0));
  VMM_ASSIGN(rep.totalMillis, field<int64_t>(r, "total_ms", 0));
  VMM_ASSIGN(rep.commandOutputs, field<std::vector<std::string>>(r, "command_outputs", {}));
  return rep;
}

}  // namespace vmm::customize
