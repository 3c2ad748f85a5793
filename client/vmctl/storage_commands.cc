// vmctl pool ... and vol ...: storage pools and their volumes.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "base/fs.h"
#include "base/strings.h"
#include "client/vmctl/commands.h"
#include "client/vmctl/output.h"
#include "model/project.h"
#include "model/units.h"

namespace vmm::vmctl {

namespace {

std::string sizeText(const json& v) { return v.is_number_unsigned() || v.is_number_integer() ? model::humanSize(v.get<uint64_t>()) : text(v); }

void printPoolTable(const json& list) {
  Table t({"NAME", "TYPE", "STATE", "AUTOSTART", "CAPACITY", "ALLOCATION", "AVAILABLE", "VOLUMES"});
  for (const auto& p : list)
    t.add({text(p["name"]), text(p["type"]), text(p["state"]), p.value("autostart", false) ? "yes" : "no",
           sizeText(p["capacity"]), sizeText(p["allocation"]), sizeText(p["available"]), text(p["volumes"])});
  t.print();
}

void printPoolInfo(const json& p) {
  std::vector<std::pair<std::string, std::string>> f = {
      {"Name", text(p["name"])}, {"UUID", text(p["uuid"])}, {"Type", text(p["type"])},
      {"State", text(p["state"])}};
  if (p.contains("error")) f.emplace_back("Error", text(p["error"]));
  if (p.contains("path")) f.emplace_back("Path", text(p["path"]));
  const auto& src = p.value("source", json::object());
  for (auto it = src.begin(); it != src.end(); ++it)
    f.emplace_back("Source " + it.key(), it->is_array() ? join(it->get<std::vector<std::string>>(), ", ") : text(*it));
  f.emplace_back("Autostart", p.value("autostart", false) ? "yes" : "no");
  f.emplace_back("Capacity", sizeText(p["capacity"]));
  f.emplace_back("Allocation", sizeText(p["allocation"]));
  f.emplace_back("Available", sizeText(p["available"]));
  f.emplace_back("Volumes", text(p["volumes"]));
  printFields(f);
}

void printVolumeTable(const json& list, bool allProjects) {
  std::vector<std::string> headers = {"NAME", "FORMAT", "CAPACITY", "ALLOCATION", "BACKING", "USED BY"};
  if (allProjects) headers.insert(headers.begin(), "PROJECT");
  Table t(headers);
  for (const auto& v : list) {
    std::vector<std::string> users = v.value("used_by", std::vector<std::string>{});
    std::string project = entryProject(v);
    std::vector<std::string> row = {entryName(v), text(v["format"]), sizeText(v["capacity"]), sizeText(v["allocation"]),
                                    model::unqualifyText(text(v.value("backing_volume", json())), project),
                                    model::unqualifyText(join(users, ","), project)};
    if (allProjects) row.insert(row.begin(), project);
    t.add(row);
  }
  t.print();
}

void printVolumeInfo(const json& v) {
  std::vector<std::string> users = v.value("used_by", std::vector<std::string>{});
  printFields({{"Name", text(v["name"])},
               {"Pool", text(v["pool"])},
               {"Format", text(v["format"])},
               {"Capacity", sizeText(v["capacity"]) + " (" + text(v["capacity"]) + " bytes)"},
               {"Allocation", sizeText(v["allocation"])},
               {"Path", text(v["path"])},
               {"Backing volume", text(v.value("backing_volume", json()))},
               {"Used by", join(users, ", ")}});
}

// Upload and download progress on the same bar as operations.
void transferProgress(const char* what, uint64_t done, uint64_t total) {
  if (jsonOutput() || total == 0) return;
  static int last = -1;
  int pct = static_cast<int>(done * 100 / total);
  if (pct == last && done != total) return;
  last = pct;
  showProgress(json{{"status", "running"}, {"progress", {{"percent", pct}, {"message", std::string(what) + " " + model::humanSize(done)}}}});
}

void registerPoolCommands(CLI::App& app, Context& ctx, std::function<int()>& action) {
  auto* pool = app.add_subcommand("pool", "Storage pools: list, define, start, stop, refresh, info, delete");
  pool->require_subcommand(1);

  pool->add_subcommand("list", "List storage pools")->callback([&] {
    action = [&] { return callAndReport(ctx, "pool.list", json::object(), [](const json& r) { printResult(r, printPoolTable); }); };
  });

  {
    auto* c = pool->add_subcommand("define", "Define a pool (and start it); --build prepares its storage first");
    struct Opts {
      std::string name, type = "dir", path, host, dir, vg, target, initiator, username, secretFile;
      std::vector<std::string> devices;
      int port = 0;
      bool build = false, noStart = false, noAutostart = false;
    };
    auto o = std::make_shared<Opts>();
    c->add_option("name", o->name, "the pool's name")->required();
    c->add_option("-t,--type", o->type, "dir, logical, netfs or iscsi")->check(CLI::IsMember({"dir", "logical", "netfs", "iscsi"}));
    c->add_option("--path", o->path, "dir: the directory");
    c->add_option("--host", o->host, "netfs, iscsi: the server or portal address");
    c->add_option("--port", o->port, "netfs, iscsi: the server's port");
    c->add_option("--source-dir", o->dir, "netfs: the exported directory");
    c->add_option("--device", o->devices, "logical: a physical volume (repeat for several)");
    c->add_option("--vg", o->vg, "logical: the volume group (default: the pool's name)");
    c->add_option("--target", o->target, "iscsi: the target IQN");
    c->add_option("--initiator", o->initiator, "iscsi: our initiator IQN");
    c->add_option("--username", o->username, "iscsi: CHAP user name");
    c->add_option("--secret-file", o->secretFile, "iscsi: a file holding the CHAP secret (kept out of argv and shell history)");
    c->add_flag("--build", o->build, "prepare the storage: create the directory; pvcreate + vgcreate (erases the devices)");
    c->add_flag("--no-start", o->noStart, "define only");
    c->add_flag("--no-autostart", o->noAutostart, "do not start it with vmmd");
    c->callback([&, o] {
      action = [&, o] {
        json src = json::object();
        if (!o->host.empty()) src["host"] = o->host;
        if (o->port) src["port"] = o->port;
        if (!o->dir.empty()) src["dir"] = o->dir;
        if (!o->devices.empty()) src["devices"] = o->devices;
        if (!o->vg.empty()) src["vg_name"] = o->vg;
        if (!o->target.empty()) src["target"] = o->target;
        if (!o->initiator.empty()) src["initiator"] = o->initiator;
        if (!o->username.empty()) src["username"] = o->username;
        if (!o->secretFile.empty()) {
          auto secret = fs::readFile(o->secretFile, 4096);
          if (!secret.ok()) return reportError(secret.error().wrap("--secret-file"));
          src["secret"] = std::string(trim(*secret));
        }
        json def = {{"name", o->name}, {"type", o->type}, {"source", src}, {"autostart", !o->noAutostart}};
        if (!o->path.empty()) def["path"] = absolutePath(o->path);
        json p = {{"definition", def}, {"build", o->build}, {"start", !o->noStart}};
        return callAndReport(ctx, "pool.create", p, [](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Pool " << text(r["name"]) << " defined (" << text(r["state"]) << ")\n";
        });
      };
    });
  }

  auto simple = [&](const char* verb, const char* help, const char* method, const char* done) {
    auto* c = pool->add_subcommand(verb, help);
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "the pool")->required();
    c->callback([&, name, method, done] {
      action = [&, name, method, done] {
        return callAndReport(ctx, method, {{"name", *name}}, [name, done](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Pool " << *name << " " << done << "\n";
        });
      };
    });
  };
  simple("start", "Start (activate) a pool", "pool.start", "started");
  simple("stop", "Stop (deactivate) a pool", "pool.stop", "stopped");
  simple("refresh", "Re-read a pool's volumes and capacity", "pool.refresh", "refreshed");
  {
    auto* c = pool->add_subcommand("info", "Show a pool");
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "the pool")->required();
    c->callback([&, name] {
      action = [&, name] { return callAndReport(ctx, "pool.get", {{"name", *name}}, [](const json& r) { printResult(r, printPoolInfo); }); };
    });
  }
  {
    auto* c = pool->add_subcommand("delete", "Remove a pool's definition (--storage: also its empty storage)");
    auto name = std::make_shared<std::string>();
    auto storage = std::make_shared<bool>(false);
    c->add_option("name", *name, "the pool")->required();
    c->add_flag("--storage", *storage, "also delete the storage: rmdir; vgremove + pvremove");
    c->callback([&, name, storage] {
      action = [&, name, storage] {
        return callAndReport(ctx, "pool.delete", {{"name", *name}, {"storage", *storage}}, [name](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Pool " << *name << " deleted\n";
        });
      };
    });
  }
}

void registerVolumeCommands(CLI::App& app, Context& ctx, std::function<int()>& action) {
  auto* vol = app.add_subcommand("vol", "Volumes: list, create, delete, resize, clone, info, upload, download, wipe");
  vol->require_subcommand(1);
  struct Target {
    std::string pool, name;
  };
  auto addTarget = [](CLI::App* c, const std::shared_ptr<Target>& t) {
    c->add_option("pool", t->pool, "the pool")->required();
    c->add_option("volume", t->name, "the volume")->required();
  };

  {
    auto* c = vol->add_subcommand("list", "List a pool's volumes");
    auto p = std::make_shared<std::string>();
    auto allProjects = std::make_shared<bool>(false);
    c->add_option("pool", *p, "the pool")->required();
    c->add_flag("--all-projects", *allProjects, "the volumes of every project");
    c->callback([&, p, allProjects] {
      action = [&, p, allProjects] {
        json params = {{"pool", *p}};
        if (*allProjects) params["all_projects"] = true;
        return callAndReport(ctx, "volume.list", params, [allProjects](const json& r) {
          jsonOutput() ? printJson(r) : printVolumeTable(r, *allProjects);
        });
      };
    });
  }
  {
    auto* c = vol->add_subcommand("info", "Show a volume");
    auto t = std::make_shared<Target>();
    addTarget(c, t);
    c->callback([&, t] {
      action = [&, t] {
        return callAndReport(ctx, "volume.get", {{"pool", t->pool}, {"name", t->name}}, [](const json& r) { printResult(r, printVolumeInfo); });
      };
    });
  }
  {
    auto* c = vol->add_subcommand("create",
                                  "Create a volume (qcow2 unless --format raw; --backing makes a linked clone; "
                                  "--format dir: a directory for a container rootfs, optionally --from-tar)");
    auto t = std::make_shared<Target>();
    auto size = std::make_shared<std::string>();
    auto format = std::make_shared<std::string>("qcow2");
    auto backing = std::make_shared<std::string>();
    auto prealloc = std::make_shared<bool>(false);
    auto fromTar = std::make_shared<std::string>();
    addTarget(c, t);
    c->add_option("size", *size, "capacity: 10G, 512MiB, bytes (optional with --backing; none for dir)");
    c->add_option("-f,--format", *format, "qcow2, raw or dir (dir pools: a directory volume)")->check(CLI::IsMember({"qcow2", "raw", "dir"}));
    c->add_option("--backing", *backing, "a volume of the same pool this one is a linked clone of");
    c->add_flag("--preallocate", *prealloc, "allocate all space now");
    c->add_option("--from-tar", *fromTar,
                  "with --format dir: unpack this rootfs tarball (a path on vmmd's host; uncompressed, gzip, xz, bzip2 or zstd)");
    c->callback([&, t, size, format, backing, prealloc, fromTar] {
      action = [&, t, size, format, backing, prealloc, fromTar] {
        json v = {{"name", t->name}, {"format", *format}};
        if (!size->empty()) v["capacity"] = *size;
        if (!backing->empty()) v["backing_volume"] = *backing;
        if (*prealloc) v["preallocate"] = true;
        // The daemon reads the file: a relative path is made absolute here.
        if (!fromTar->empty()) v["from_tar"] = std::filesystem::absolute(*fromTar).lexically_normal().string();
        return callAndReport(ctx, "volume.create", {{"pool", t->pool}, {"volume", v}}, [](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Volume " << text(r["pool"]) << "/" << text(r["name"]) << " created (" << sizeText(r["capacity"]) << ", " << text(r["format"]) << ")\n";
        });
      };
    });
  }
  {
    auto* c = vol->add_subcommand("delete", "Delete a volume");
    auto t = std::make_shared<Target>();
    addTarget(c, t);
    c->callback([&, t] {
      action = [&, t] {
        return callAndReport(ctx, "volume.delete", {{"pool", t->pool}, {"name", t->name}}, [t](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Volume " << t->pool << "/" << t->name << " deleted\n";
        });
      };
    });
  }
  {
    auto* c = vol->add_subcommand("resize", "Change a volume's capacity");
    auto t = std::make_shared<Target>();
    auto size = std::make_shared<std::string>();
    auto shrink = std::make_shared<bool>(false);
    addTarget(c, t);
    c->add_option("size", *size, "the new capacity: 20G, bytes")->required();
    c->add_flag("--shrink", *shrink, "allow shrinking (data beyond the new size is lost)");
    c->callback([&, t, size, shrink] {
      action = [&, t, size, shrink] {
        return callAndReport(ctx, "volume.resize", {{"pool", t->pool}, {"name", t->name}, {"capacity", *size}, {"shrink", *shrink}},
                             [](const json& r) {
                               if (jsonOutput()) return printJson(r);
                               std::cout << "Volume " << text(r["pool"]) << "/" << text(r["name"]) << " is now " << sizeText(r["capacity"]) << "\n";
                             });
      };
    });
  }
  {
    auto* c = vol->add_subcommand("clone", "Clone a volume: linked (instant, qcow2 overlay) or --full copy with progress");
    auto t = std::make_shared<Target>();
    auto target = std::make_shared<std::string>();
    auto full = std::make_shared<bool>(false);
    addTarget(c, t);
    c->add_option("new-name", *target, "the clone's name")->required();
    c->add_flag("--full", *full, "an independent full copy instead of a linked clone");
    c->callback([&, t, target, full] {
      action = [&, t, target, full] {
        return callAndReport(
            ctx, "volume.clone", {{"pool", t->pool}, {"name", t->name}, {"target", *target}, {"linked", !*full}},
            [](const json& r) {
              if (jsonOutput()) return printJson(r);
              std::cout << "Volume " << text(r["pool"]) << "/" << text(r["name"]) << " created\n";
            },
            true);
      };
    });
  }
  {
    auto* c = vol->add_subcommand("wipe", "Erase a volume's content");
    auto t = std::make_shared<Target>();
    addTarget(c, t);
    c->callback([&, t] {
      action = [&, t] {
        return callAndReport(ctx, "volume.wipe", {{"pool", t->pool}, {"name", t->name}}, [t](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Volume " << t->pool << "/" << t->name << " wiped\n";
        }, true);
      };
    });
  }
  {
    auto* c = vol->add_subcommand("upload", "Replace a volume's content with a file's bytes (streamed)");
    auto t = std::make_shared<Target>();
    auto file = std::make_shared<std::string>();
    addTarget(c, t);
    c->add_option("file", *file, "the file to send ('-' for standard input needs --size)")->required();
    auto size = std::make_shared<std::string>();
    c->add_option("--size", *size, "bytes to read from standard input");
    c->callback([&, t, file, size] {
      action = [&, t, file, size]() -> int {
        fs::UniqueFd fd(*file == "-" ? ::dup(0) : ::open(file->c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) return reportError(systemError("cannot open " + *file, errno));
        uint64_t bytes = 0;
        if (*file == "-") {
          auto s = model::parseSize(*size);
          if (!s.ok()) return reportError(s.error().wrap("--size"));
          bytes = *s;
        } else {
          struct stat st{};
          ::fstat(fd.get(), &st);
          bytes = static_cast<uint64_t>(st.st_size);
        }
        auto conn = ctx.connection();
        if (!conn.ok()) return reportError(conn.error());
        auto r = (*conn)->uploadVolume(t->pool, t->name, fd.get(), bytes,
                                       [](uint64_t d, uint64_t total) { transferProgress("uploaded", d, total); });
        endProgress();
        if (!r.ok()) return reportError(r.error());
        if (jsonOutput()) printJson(*r);
        else std::cout << "Uploaded " << model::humanSize(bytes) << " to " << t->pool << "/" << t->name << "\n";
        return kOk;
      };
    });
  }
  {
    auto* c = vol->add_subcommand("download", "Write a volume's bytes to a file (streamed)");
    auto t = std::make_shared<Target>();
    auto file = std::make_shared<std::string>();
    addTarget(c, t);
    c->add_option("file", *file, "where to write ('-' for standard output)")->required();
    c->callback([&, t, file] {
      action = [&, t, file]() -> int {
        bool toStdout = *file == "-";
        std::string partial = *file + ".partial";
        fs::UniqueFd fd(toStdout ? ::dup(1) : ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!fd.valid()) return reportError(systemError("cannot create " + (toStdout ? std::string("stdout") : partial), errno));
        auto conn = ctx.connection();
        if (!conn.ok()) return reportError(conn.error());
        auto r = (*conn)->downloadVolume(t->pool, t->name, fd.get(),
                                         [](uint64_t d, uint64_t total) { transferProgress("downloaded", d, total); });
        endProgress();
        if (!r.ok()) {
          if (!toStdout) ::unlink(partial.c_str());
          return reportError(r.error());
        }
        if (!toStdout) {
          if (::fsync(fd.get()) != 0 || ::rename(partial.c_str(), file->c_str()) != 0) {
            ::unlink(partial.c_str());
            return reportError(systemError("cannot write " + *file, errno));
          }
          if (jsonOutput()) printJson({{"bytes", *r}, {"file", *file}});
          else std::cout << "Downloaded " << model::humanSize(*r) << " to " << *file << "\n";
        }
        return kOk;
      };
    });
  }
}

}  // namespace

void registerStorageCommands(CLI::App& app, Context& ctx, std::function<int()>& action) {
  registerPoolCommands(app, ctx, action);
  registerVolumeCommands(app, ctx, action);
}

}  // namespace vmm::vmctl
