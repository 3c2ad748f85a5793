#include "storage/customize/guestfs_apply.h"

#include <guestfs.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>

#include "base/fs.h"
#include "base/strings.h"

namespace vmm::customize {

namespace {

struct HandleCloser {
  void operator()(guestfs_h* g) const { guestfs_close(g); }
};
using Handle = std::unique_ptr<guestfs_h, HandleCloser>;

// libguestfs returns NULL-terminated string lists the caller frees.
std::vector<std::string> takeList(char** list) {
  std::vector<std::string> out;
  if (!list) return out;
  for (char** p = list; *p; ++p) {
    out.emplace_back(*p);
    free(*p);
  }
  free(list);
  return out;
}

std::string takeString(char* s) {
  std::string out = s ? s : "";
  free(s);
  return out;
}

// Every error message of a failed call (launch reports the cause first, then "guestfs_launch
// failed, see earlier error messages"), and the tail of the appliance's console output.
struct Diagnostics {
  std::vector<std::string> errors;
  std::string console;
};

void collectError(guestfs_h*, void* opaque, const char* msg) { static_cast<Diagnostics*>(opaque)->errors.emplace_back(msg); }

void collectConsole(guestfs_h*, void* opaque, uint64_t, int, int, const char* buf, size_t len, const uint64_t*, size_t) {
  auto& console = static_cast<Diagnostics*>(opaque)->console;
  console.append(buf, len);
  if (console.size() > 8192) console.erase(0, console.size() - 8192);
}

Diagnostics* diagnostics = nullptr;  // the one handle of this process

Error gfsError(guestfs_h* g, const std::string& what) {
  std::vector<std::string> parts;
  if (diagnostics) {
    for (auto& m : diagnostics->errors) {
      auto first = split(m, '\n', true);
      if (first.empty() || startsWith(first[0], "guestfs_launch failed")) continue;
      parts.push_back(first[0]);
    }
    // QEMU's own complaint (a bad image, a missing file) only shows on the console.
    for (const auto& line : split(diagnostics->console, '\n', true))
      if (startsWith(line, "qemu-system") || startsWith(line, "qemu:")) parts.push_back(std::string(trim(line)));
    diagnostics->errors.clear();
  }
  if (parts.empty()) {
    const char* msg = guestfs_last_error(g);
    parts.push_back(msg ? msg : "unknown libguestfs error");
  }
  return internalError(what + ": " + join(parts, "; "));
}

int64_t millisSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
}

struct Account {
  int uid = 0;
  int gid = 0;
  std::string home;
};

// The image's /etc/passwd or /etc/group as name -> fields (empty if the file is missing).
std::map<std::string, std::vector<std::string>> readDb(guestfs_h* g, const char* path) {
  std::map<std::string, std::vector<std::string>> db;
  if (guestfs_is_file(g, path) <= 0) return db;
  size_t size = 0;
  char* text = guestfs_read_file(g, path, &size);
  if (!text) return db;
  std::string content(text, size);
  free(text);
  for (const auto& line : split(content, '\n', true)) {
    auto f = split(line, ':');
    if (f.size() >= 3 && !f[0].empty()) db[f[0]] = f;
  }
  return db;
}

class Customizer {
 public:
  Customizer(guestfs_h* g, std::string display) : g_(g), display_(std::move(display)) {}

  Result<Account> account(const std::string& user) {
    if (passwd_.empty()) passwd_ = readDb(g_, "/etc/passwd");
    auto it = passwd_.find(user);
    if (it == passwd_.end() || it->second.size() < 6) {
      if (user == "root") return Account{0, 0, "/root"};
      return notFound("user " + quote(user) + " does not exist in " + display_);
    }
    auto uid = parseInt(it->second[2]);
    auto gid = parseInt(it->second[3]);
    if (!uid || !gid) return invalidArgument("bad /etc/passwd entry for " + quote(user) + " in " + display_);
    return Account{static_cast<int>(*uid), static_cast<int>(*gid), it->second[5]};
  }

  Result<std::pair<int, int>> owner(const std::string& spec) {
    if (spec.empty()) return std::make_pair(0, 0);
    auto parts = split(spec, ':');
    auto uidNum = parseInt(parts[0]);
    int uid = 0, gid = 0;
    if (uidNum) {
      uid = gid = static_cast<int>(*uidNum);
    } else {
      VMM_ASSIGN(auto acc, account(parts[0]));
      uid = acc.uid;
      gid = acc.gid;
    }
    if (parts.size() == 2) {
      if (auto gidNum = parseInt(parts[1])) {
        gid = static_cast<int>(*gidNum);
      } else {
        if (groups_.empty()) groups_ = readDb(g_, "/etc/group");
        auto it = groups_.find(parts[1]);
        auto parsed = it == groups_.end() ? std::nullopt : parseInt(it->second[2]);
        if (!parsed) return notFound("group " + quote(parts[1]) + " does not exist in " + display_);
        gid = static_cast<int>(*parsed);
      }
    }
    return std::make_pair(uid, gid);
  }

  Status writeFile(const std::string& path, std::string_view content, uint32_t mode, int uid, int gid) {
    std::string dir = fs::dirName(path);
    if (guestfs_mkdir_p(g_, dir.c_str()) != 0) return gfsError(g_, "creating " + dir);
    if (guestfs_write(g_, path.c_str(), content.data(), content.size()) != 0) return gfsError(g_, "writing " + path);
    if (guestfs_chown(g_, uid, gid, path.c_str()) != 0) return gfsError(g_, "chown " + path);
    if (guestfs_chmod(g_, static_cast<int>(mode), path.c_str()) != 0) return gfsError(g_, "chmod " + path);
    return okStatus();
  }

  Status injectFile(const InjectedFile& f) {
    VMM_ASSIGN(auto ids, owner(f.owner));
    return writeFile(f.path, f.content, f.mode, ids.first, ids.second);
  }

  Status addKeys(const AuthorizedKeys& k) {
    VMM_ASSIGN(auto acc, account(k.user));
    if (acc.home.empty() || acc.home[0] != '/') return invalidArgument("user " + k.user + " has no home directory in " + display_);
    std::string dir = acc.home + "/.ssh";
    if (guestfs_mkdir_p(g_, dir.c_str()) != 0) return gfsError(g_, "creating " + dir);
    if (guestfs_chown(g_, acc.uid, acc.gid, dir.c_str()) != 0) return gfsError(g_, "chown " + dir);
    if (guestfs_chmod(g_, 0700, dir.c_str()) != 0) return gfsError(g_, "chmod " + dir);
    std::string file = dir + "/authorized_keys";
    std::string content;
    if (guestfs_is_file(g_, file.c_str()) > 0) {
      size_t size = 0;
      char* old = guestfs_read_file(g_, file.c_str(), &size);
      if (!old) return gfsError(g_, "reading " + file);
      content.assign(old, size);
      free(old);
    }
    auto present = split(content, '\n', true);
    for (const auto& key : k.keys) {
      if (std::find(present.begin(), present.end(), key) != present.end()) continue;
      if (!content.empty() && content.back() != '\n') content += '\n';
      content += key + "\n";
      present.push_back(key);
    }
    return writeFile(file, content, 0600, acc.uid, acc.gid);
  }

  Status setHostname(const std::string& name) {
    VMM_TRY(writeFile("/etc/hostname", name + "\n", 0644, 0, 0));
    if (guestfs_is_file(g_, "/etc/hosts") <= 0) return okStatus();
    size_t size = 0;
    char* text = guestfs_read_file(g_, "/etc/hosts", &size);
    if (!text) return gfsError(g_, "reading /etc/hosts");
    std::string hosts(text, size);
    free(text);
    std::string out;
    for (const auto& line : split(hosts, '\n')) {
      if (startsWith(line, "127.0.1.1")) continue;
      out += line + "\n";
    }
    while (endsWith(out, "\n\n")) out.pop_back();
    std::string shortName = name.substr(0, name.find('.'));
    out += "127.0.1.1\t" + name + (shortName != name ? " " + shortName : "") + "\n";
    return writeFile("/etc/hosts", out, 0644, 0, 0);
  }

  Result<std::string> run(size_t index, const std::string& command) {
    char* out = guestfs_sh(g_, command.c_str());
    if (!out) return gfsError(g_, "command " + std::to_string(index + 1) + " (" + quote(command.substr(0, 60)) + ")");
    return takeString(out);
  }

 private:
  guestfs_h* g_;
  std::string display_;
  std::map<std::string, std::vector<std::string>> passwd_, groups_;
};

// Mounts the inspected root and its other filesystems, or else the first filesystem that mounts.
Status mountRoot(guestfs_h* g, const std::string& display, CustomizeReport& report) {
  auto roots = takeList(guestfs_inspect_os(g));
  if (!roots.empty()) {
    const std::string& root = roots.front();
    report.rootDevice = root;
    report.osType = takeString(guestfs_inspect_get_type(g, root.c_str()));
    report.distro = takeString(guestfs_inspect_get_distro(g, root.c_str()));
    auto flat = takeList(guestfs_inspect_get_mountpoints(g, root.c_str()));
    std::vector<std::pair<std::string, std::string>> mounts;  // mountpoint, device
    for (size_t i = 0; i + 1 < flat.size(); i += 2) mounts.emplace_back(flat[i], flat[i + 1]);
    std::sort(mounts.begin(), mounts.end(), [](const auto& a, const auto& b) { return a.first.size() < b.first.size(); });
    for (const auto& [mp, dev] : mounts) {
      if (guestfs_mount(g, dev.c_str(), mp.c_str()) != 0) {
        if (mp == "/") return gfsError(g, "mounting " + dev + " as /");
      }
    }
    return okStatus();
  }
  auto fss = takeList(guestfs_list_filesystems(g));
  for (size_t i = 0; i + 1 < fss.size(); i += 2) {
    const auto& dev = fss[i];
    const auto& type = fss[i + 1];
    if (type == "swap" || type == "unknown" || type.empty()) continue;
    if (guestfs_mount(g, dev.c_str(), "/") == 0) {
      report.rootDevice = dev;
      return okStatus();
    }
  }
  return invalidArgument("no filesystem in " + display + " could be mounted (not a disk image, or an unsupported format)");
}

// A handle whose error messages and appliance console output are collected in `diag`.
Result<Handle> newHandle(Diagnostics& diag) {
  Handle handle(guestfs_create());
  if (!handle) return unavailable("libguestfs: cannot create a handle");
  diagnostics = &diag;
  guestfs_set_error_handler(handle.get(), collectError, &diag);
  guestfs_set_event_callback(handle.get(), collectConsole, GUESTFS_EVENT_APPLIANCE, 0, &diag);
  return handle;
}

}  // namespace

Result<CustomizeReport> checkAppliance() {
  auto t0 = std::chrono::steady_clock::now();
  Diagnostics diag;
  VMM_ASSIGN(auto handle, newHandle(diag));
  guestfs_h* g = handle.get();
  if (guestfs_add_drive_opts(g, "/dev/null", GUESTFS_ADD_DRIVE_OPTS_FORMAT, "raw", GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, -1) != 0)
    return gfsError(g, "adding /dev/null");
  CustomizeReport report;
  if (guestfs_launch(g) != 0) return gfsError(g, "starting the libguestfs appliance");
  report.launchMillis = millisSince(t0);
  if (guestfs_shutdown(g) != 0) return gfsError(g, "shutting the libguestfs appliance down");
  report.totalMillis = millisSince(t0);
  return report;
}

Result<CustomizeReport> applyCustomization(const std::string& drivePath, const std::string& displayPath,
                                           const CustomizeSpec& spec) {
  auto t0 = std::chrono::steady_clock::now();
  Diagnostics diag;
  VMM_ASSIGN(auto handle, newHandle(diag));
  guestfs_h* g = handle.get();
  const char* format = spec.format.empty() ? "raw" : spec.format.c_str();
  if (guestfs_add_drive_opts(g, drivePath.c_str(), GUESTFS_ADD_DRIVE_OPTS_FORMAT, format, GUESTFS_ADD_DRIVE_OPTS_READONLY, 0, -1) != 0)
    return gfsError(g, "adding " + displayPath);

  CustomizeReport report;
  auto tLaunch = std::chrono::steady_clock::now();
  if (guestfs_launch(g) != 0) return gfsError(g, "starting the libguestfs appliance for " + displayPath);
  report.launchMillis = millisSince(tLaunch);

  VMM_TRY(mountRoot(g, displayPath, report));
  Customizer c(g, displayPath);
  for (const auto& f : spec.files) VMM_TRY(c.injectFile(f));
  for (const auto& k : spec.sshKeys) VMM_TRY(c.addKeys(k));
  if (!spec.hostname.empty()) VMM_TRY(c.setHostname(spec.hostname));
  for (size_t i = 0; i < spec.commands.size(); ++i) {
    VMM_ASSIGN(auto out, c.run(i, spec.commands[i]));
    report.commandOutputs.push_back(std::move(out));
  }
  if (guestfs_umount_all(g) != 0) return gfsError(g, "unmounting " + displayPath);
  // shutdown waits for QEMU to flush and exit: only then is the image complete.
  if (guestfs_shutdown(g) != 0) return gfsError(g, "closing " + displayPath);
  report.totalMillis = millisSince(t0);
  return report;
}

}  // namespace vmm::customize
