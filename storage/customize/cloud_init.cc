#include "storage/customize/cloud_init.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/fs.h"
#include "base/process.h"
#include "base/reverter.h"
#include "base/strings.h"

namespace vmm::customize {

namespace {

// Decodes one UTF-8 sequence at s[i]; returns the code point and advances i, or -1 if invalid.
long decodeUtf8(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) return -1;
  long cp = len == 1 ? c : c & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc >> 6) != 0x2) return -1;
    cp = (cp << 6) | (cc & 0x3F);
  }
  static constexpr long minFor[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < minFor[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  i += len;
  return cp;
}

bool hasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }


bool isUserName(std::string_view n) {
  if (n.empty() || n.size() > 32) return false;
  if (!(islower(static_cast<unsigned char>(n[0])) || n[0] == '_')) return false;
  for (char c : n)
    if (!(islower(static_cast<unsigned char>(c)) || isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
      return false;
  return true;
}

bool isIp(const std::string& s, bool* v6 = nullptr) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) {
    if (v6) *v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    if (v6) *v6 = true;
    return true;
  }
  return false;
}

bool isCidr(const std::string& s) {
  auto slash = s.find('/');
  if (slash == std::string::npos) return false;
  bool v6 = false;
  if (!isIp(s.substr(0, slash), &v6)) return false;
  auto prefix = parseUint(s.substr(slash + 1));
  return prefix && *prefix <= (v6 ? 128u : 32u);
}

bool isMac(std::string_view m) {
  if (m.size() != 17) return false;
  for (size_t i = 0; i < m.size(); ++i) {
    if (i % 3 == 2 ? m[i] != ':' : !isxdigit(static_cast<unsigned char>(m[i]))) return false;
  }
  return true;
}

bool isKeyName(std::string_view k) {
  if (k.empty() || k.size() > 64) return false;
  for (char c : k)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  return true;
}

bool isOctalMode(std::string_view p) {
  if (p.size() < 3 || p.size() > 4) return false;
  for (char c : p)
    if (c < '0' || c > '7') return false;
  return true;
}

// Builds block-style YAML; every value goes through yamlQuote, so the first invalid string
// (not UTF-8) is remembered and reported once at the end.
class YamlWriter {
 public:
  void key(int indent, std::string_view k) { line(indent, std::string(k) + ":"); }
  void scalar(int indent, std::string_view k, std::string_view v) { line(indent, std::string(k) + ": " + q(v)); }
  void boolean(int indent, std::string_view k, bool v) { line(indent, std::string(k) + (v ? ": true" : ": false")); }
  void item(int indent, std::string_view v) { line(indent, "- " + q(v)); }
  // "- key: value" opening a mapping inside a list.
  void itemScalar(int indent, std::string_view k, std::string_view v) { line(indent, "- " + std::string(k) + ": " + q(v)); }
  void list(int indent, std::string_view k, const std::vector<std::string>& items) {
    if (items.empty()) return;
    key(indent, k);
    for (const auto& i : items) item(indent + 2, i);
  }
  void raw(std::string_view text) { out_ += text; }

  Result<std::string> finish(std::string_view what) {
    if (!bad_.empty()) return invalidArgument(std::string(what) + ": " + bad_ + " is not valid UTF-8");
    return std::move(out_);
  }

 private:
  void line(int indent, const std::string& text) {
    out_.append(static_cast<size_t>(indent), ' ');
    out_ += text;
    out_ += '\n';
  }
  std::string q(std::string_view v) {
    auto r = yamlQuote(v);
    if (r.ok()) return *r;
    if (bad_.empty()) bad_ = quote(v.substr(0, 40));
    return "\"\"";
  }
  std::string out_;
  std::string bad_;
};

Status validateUsers(const CloudInitSpec& spec) {
  for (const auto& k : spec.sshAuthorizedKeys)
    if (k.empty() || hasLineBreak(k)) return invalidArgument("ssh_authorized_keys: a key must be one non-empty line");
  for (const auto& u : spec.users) {
    if (!isUserName(u.name)) return invalidArgument("users: invalid user name " + quote(u.name));
    for (const auto& k : u.sshAuthorizedKeys)
      if (k.empty() || hasLineBreak(k))
        return invalidArgument("users." + u.name + ".ssh_authorized_keys: a key must be one non-empty line");
    if (hasLineBreak(u.sudo)) return invalidArgument("users." + u.name + ".sudo: must be one line");
    if (!u.shell.empty() && (u.shell[0] != '/' || hasLineBreak(u.shell)))
      return invalidArgument("users." + u.name + ".shell: must be an absolute path");
    for (const auto& g : u.groups)
      if (!isUserName(g)) return invalidArgument("users." + u.name + ".groups: invalid group " + quote(g));
  }
  return okStatus();
}

Status validateUserData(const CloudInitSpec& spec) {
  bool generated = !spec.sshAuthorizedKeys.empty() || !spec.users.empty() || !spec.packages.empty() ||
                   spec.packageUpdate || !spec.runcmd.empty() || !spec.writeFiles.empty() || !spec.includeDefaultUser;
  if (!spec.userDataOverride.empty() && generated)
    return invalidArgument("user_data override excludes users, ssh keys, packages, runcmd and write_files");
  VMM_TRY(validateUsers(spec));
  for (const auto& p : spec.packages)
    if (p.empty() || p.find_first_of(" \t\r\n") != std::string::npos) return invalidArgument("packages: invalid package name " + quote(p));
  for (const auto& f : spec.writeFiles) {
    if (f.path.empty() || f.path[0] != '/' || hasLineBreak(f.path))
      return invalidArgument("write_files: path must be absolute: " + quote(f.path));
    if (!isOctalMode(f.permissions)) return invalidArgument("write_files." + f.path + ": permissions must be octal like 0644");
    if (!f.owner.empty()) {
      auto parts = split(f.owner, ':');
      if (parts.size() > 2 || !isUserName(parts[0]) || (parts.size() == 2 && !isUserName(parts[1])))
        return invalidArgument("write_files." + f.path + ": owner must be user[:group]");
    }
  }
  return okStatus();
}

Status validateInterface(const CloudInterface& i) {
  if (!isKeyName(i.id)) return invalidArgument("network: invalid interface id " + quote(i.id));
  std::string where = "network." + i.id + ": ";
  if (!i.macAddress.empty() && !isMac(i.macAddress)) return invalidArgument(where + "invalid MAC address " + quote(i.macAddress));
  if (!i.dhcp4 && !i.dhcp6 && i.addresses.empty()) return invalidArgument(where + "needs DHCP or at least one address");
  for (const auto& a : i.addresses)
    if (!isCidr(a)) return invalidArgument(where + "address must be IP/prefix: " + quote(a));
  bool v6 = false;
  if (!i.gateway4.empty() && !(isIp(i.gateway4, &v6) && !v6)) return invalidArgument(where + "invalid IPv4 gateway " + quote(i.gateway4));
  if (!i.gateway6.empty() && !(isIp(i.gateway6, &v6) && v6)) return invalidArgument(where + "invalid IPv6 gateway " + quote(i.gateway6));
  for (const auto& n : i.nameservers)
    if (!isIp(n)) return invalidArgument(where + "invalid name server " + quote(n));
  for (const auto& d : i.searchDomains)
    if (!isHostname(d)) return invalidArgument(where + "invalid search domain " + quote(d));
  return okStatus();
}

Result<std::string> renderUserData(const CloudInitSpec& spec) {
  if (!spec.userDataOverride.empty()) return spec.userDataOverride;
  YamlWriter y;
  y.raw("#cloud-config\n");
  if (!spec.hostname.empty()) {
    y.scalar(0, "hostname", spec.hostname);
    if (spec.hostname.find('.') != std::string::npos) y.scalar(0, "fqdn", spec.hostname);
    y.boolean(0, "preserve_hostname", false);
  }
  if (!spec.includeDefaultUser || !spec.users.empty()) {
    y.key(0, "users");
    if (spec.includeDefaultUser) y.raw("  - default\n");
    for (const auto& u : spec.users) {
      y.itemScalar(2, "name", u.name);
      y.list(4, "ssh_authorized_keys", u.sshAuthorizedKeys);
      if (!u.sudo.empty()) y.scalar(4, "sudo", u.sudo);
      if (!u.shell.empty()) y.scalar(4, "shell", u.shell);
      if (!u.groups.empty()) y.scalar(4, "groups", join(u.groups, ","));
      y.boolean(4, "lock_passwd", u.lockPassword);
    }
  }
  y.list(0, "ssh_authorized_keys", spec.sshAuthorizedKeys);
  if (spec.packageUpdate) y.boolean(0, "package_update", true);
  y.list(0, "packages", spec.packages);
  if (!spec.writeFiles.empty()) {
    y.key(0, "write_files");
    for (const auto& f : spec.writeFiles) {
      y.itemScalar(2, "path", f.path);
      y.scalar(4, "content", f.content);
      y.scalar(4, "permissions", f.permissions);
      if (!f.owner.empty()) y.scalar(4, "owner", f.owner);
      if (f.append) y.boolean(4, "append", true);
      if (f.defer) y.boolean(4, "defer", true);
    }
  }
  y.list(0, "runcmd", spec.runcmd);
  return y.finish("user-data");
}

Result<std::string> renderMetaData(const CloudInitSpec& spec) {
  YamlWriter y;
  y.scalar(0, "instance-id", spec.instanceId);
  if (!spec.hostname.empty()) y.scalar(0, "local-hostname", spec.hostname);
  for (const auto& [k, v] : spec.extraMetaData) y.scalar(0, k, v);
  return y.finish("meta-data");
}

Result<std::string> renderNetworkConfig(const CloudInitSpec& spec) {
  if (!spec.networkConfigOverride.empty()) return spec.networkConfigOverride;
  if (spec.interfaces.empty()) return std::string();
  YamlWriter y;
  y.raw("version: 2\nethernets:\n");
  for (const auto& i : spec.interfaces) {
    y.key(2, i.id);
    if (!i.macAddress.empty()) {
      y.key(4, "match");
      y.scalar(6, "macaddress", toLower(i.macAddress));
      y.scalar(4, "set-name", i.id);
    }
    y.boolean(4, "dhcp4", i.dhcp4);
    y.boolean(4, "dhcp6", i.dhcp6);
    y.list(4, "addresses", i.addresses);
    if (!i.gateway4.empty() || !i.gateway6.empty()) {
      y.key(4, "routes");
      if (!i.gateway4.empty()) {
        y.itemScalar(6, "to", "0.0.0.0/0");
        y.scalar(8, "via", i.gateway4);
      }
      if (!i.gateway6.empty()) {
        y.itemScalar(6, "to", "::/0");
        y.scalar(8, "via", i.gateway6);
      }
    }
    if (!i.nameservers.empty() || !i.searchDomains.empty()) {
      y.key(4, "nameservers");
      y.list(6, "addresses", i.nameservers);
      y.list(6, "search", i.searchDomains);
    }
  }
  return y.finish("network-config");
}

// The ISO tool: genisoimage, or xorriso in its mkisofs emulation.
Result<CommandResult> runIsoTool(const std::vector<std::string>& args, Deadline deadline) {
  RunOptions opts;
  opts.deadline = deadline;
  std::vector<std::string> argv = {"genisoimage"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = runCommand(argv, opts);
  if (r.ok() || r.error().code != ErrorCode::not_found) return r;
  argv = {"xorriso", "-as", "mkisofs"};
  argv.insert(argv.end(), args.begin(), args.end());
  r = runCommand(argv, opts);
  if (!r.ok() && r.error().code == ErrorCode::not_found)
    return unavailable("writing a cloud-init seed needs genisoimage or xorriso (neither is installed)");
  return r;
}

Status fsyncPath(const std::string& path, int flags) {
  fs::UniqueFd fd(open(path.c_str(), flags | O_CLOEXEC));
  if (!fd.valid()) return systemError("open " + path, errno);
  if (fsync(fd.get()) != 0) return systemError("fsync " + path, errno);
  return okStatus();
}

}  // namespace

Result<std::string> yamlQuote(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    long cp = decodeUtf8(s, i);
    if (cp < 0) return invalidArgument("not valid UTF-8");
    char buf[16];
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\t': out += "\\t"; continue;
      case '\r': out += "\\r"; continue;
      default: break;
    }
    // Control characters, C1, line/paragraph separators, BOM and non-characters are escaped:
    // YAML parsers refuse some of them raw, and none should be invisible in a config file.
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
      snprintf(buf, sizeof buf, "\\x%02lX", cp);
      out += buf;
    } else if (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF) {
      snprintf(buf, sizeof buf, "\\u%04lX", cp);
      out += buf;
    } else {
      out.append(s.substr(start, i - start));
    }
  }
  out += '"';
  return out;
}

Result<NoCloudSeed> renderNoCloudSeed(const CloudInitSpec& spec) {
  if (spec.instanceId.empty() || hasLineBreak(spec.instanceId)) return invalidArgument("instance_id: required, one line");
  if (!spec.hostname.empty() && !isHostname(spec.hostname)) return invalidArgument("hostname: invalid host name " + quote(spec.hostname));
  for (const auto& [k, v] : spec.extraMetaData) {
    if (!isKeyName(k)) return invalidArgument("meta-data: invalid key " + quote(k));
    if (k == "instance-id" || k == "local-hostname")
      return invalidArgument("meta-data: " + k + " is set by its own field");
  }
  VMM_TRY(validateUserData(spec));
  if (!spec.networkConfigOverride.empty() && !spec.interfaces.empty())
    return invalidArgument("network_config override excludes generated interfaces");
  for (const auto& i : spec.interfaces) VMM_TRY(validateInterface(i));
  for (size_t a = 0; a < spec.interfaces.size(); ++a)
    for (size_t b = a + 1; b < spec.interfaces.size(); ++b)
      if (spec.interfaces[a].id == spec.interfaces[b].id) return invalidArgument("network: duplicate interface " + spec.interfaces[a].id);

  NoCloudSeed seed;
  VMM_ASSIGN(seed.userData, renderUserData(spec));
  VMM_ASSIGN(seed.metaData, renderMetaData(spec));
  VMM_ASSIGN(seed.networkConfig, renderNetworkConfig(spec));
  return seed;
}

Status writeSeedIso(const CloudInitSpec& spec, const std::string& isoPath, Deadline deadline) {
  VMM_ASSIGN(auto seed, renderNoCloudSeed(spec));
  return writeSeedIso(seed, isoPath, deadline);
}

Status writeSeedIso(const NoCloudSeed& seed, const std::string& isoPath, Deadline deadline) {
  if (isoPath.empty() || isoPath.back() == '/') return invalidArgument("seed ISO path must name a file: " + quote(isoPath));
  if (fs::isDirectory(isoPath)) return invalidArgument("seed ISO path is a directory: " + isoPath);
  std::string dir = fs::dirName(isoPath);
  if (!fs::isDirectory(dir)) return notFound("directory for the seed ISO does not exist: " + dir);

  Reverter reverter;
  // The seed files in a private directory, and the ISO built next to its final name.
  std::string stage = dir + "/." + fs::baseName(isoPath) + ".seed-XXXXXX";
  if (!mkdtemp(stage.data())) return systemError("creating a temporary directory in " + dir, errno);
  reverter.add([stage] { (void)fs::removeTree(stage); });
  std::string tmpIso = dir + "/." + fs::baseName(isoPath) + ".tmp-XXXXXX";
  int fd = mkstemp(tmpIso.data());
  if (fd < 0) return systemError("creating a temporary file in " + dir, errno);
  close(fd);
  reverter.add([tmpIso] { (void)fs::removeFile(tmpIso); });

  std::vector<std::string> args = {"-output", tmpIso, "-volid", "cidata", "-joliet", "-rock", "-input-charset", "utf-8", "-quiet"};
  std::vector<std::pair<std::string, const std::string*>> files = {{"user-data", &seed.userData}, {"meta-data", &seed.metaData}};
  if (!seed.networkConfig.empty()) files.push_back({"network-config", &seed.networkConfig});
  for (const auto& [name, content] : files) {
    VMM_TRY(fs::writeFileAtomic(stage + "/" + name, *content, 0644));
    args.push_back(stage + "/" + name);
  }
  VMM_ASSIGN(auto res, runIsoTool(args, deadline));
  if (!res.success()) return internalError("building the seed ISO failed: " + res.describe());
  VMM_TRY(fsyncPath(tmpIso, O_RDONLY));
  if (rename(tmpIso.c_str(), isoPath.c_str()) != 0) return systemError("rename to " + isoPath, errno);
  (void)fsyncPath(dir, O_RDONLY | O_DIRECTORY);
  (void)fs::removeTree(stage);
  reverter.success();
  return okStatus();
}

bool isHostname(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (const auto& label : split(h, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

}  // namespace vmm::customize
