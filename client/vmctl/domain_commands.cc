#include <CLI/CLI.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "base/fs.h"
#include "base/random.h"
#include "base/strings.h"
#include "client/vmctl/commands.h"
#include "client/vmctl/output.h"
#include "client/vmctl/terminal_safe.h"
#include "model/libvirt_xml.h"

namespace vmm::vmctl {

using json = nlohmann::json;

int callAndReport(Context& ctx, const std::string& method, const json& params,
                  const std::function<void(const json&)>& done, bool progress, Millis timeout) {
  auto conn = ctx.connection();
  if (!conn.ok()) return reportError(conn.error());
  std::function<void(const json&)> onProgress;
  if (progress && !jsonOutput()) onProgress = showProgress;
  auto r = (*conn)->callAndWait(method, params, Deadline::after(timeout), onProgress);
  endProgress();
  if (!r.ok()) return reportError(r.error());
  if (done) done(*r);
  return kOk;
}

namespace {

void printDomainTable(const std::vector<wire::DomainSummary>& list, bool allProjects) {
  std::vector<std::string> headers = {"NAME", "TYPE", "STATE", "VCPUS", "MEMORY", "AUTOSTART", "SINCE"};
  if (allProjects) headers.insert(headers.begin(), "PROJECT");
  Table t(headers);
  for (const auto& d : list) {
    std::vector<std::string> row = {d.name, d.type, d.state, std::to_string(d.vcpus), d.memory, d.autostart ? "yes" : "no",
                                    d.stateSince ? d.stateSince->substr(0, 19) + "Z" : ""};
    if (allProjects) row.insert(row.begin(), d.project);
    t.add(row);
  }
  t.print();
}

void printDomainInfo(const json& d) {
  std::vector<std::pair<std::string, std::string>> f = {
      {"Name", text(d["name"])},
      {"UUID", text(d["uuid"])},
      {"Type", text(d["type"])},
      {"State", text(d["state"]) + (d.value("reason", "").empty() ? "" : " (" + text(d["reason"]) + ")")},
      {"Since", text(d["state_since"])},
      {"vCPUs", text(d["vcpus"])},
      {"Memory", text(d["memory"])},
      {"Autostart", d.value("autostart", false) ? "yes" : "no"},
      {"Generation", text(d["generation"])}};
  if (d.value("pending_changes", false)) f.emplace_back("Pending changes", "yes (applied at the next start)");
  const auto& def = d.contains("definition") ? d["definition"] : json::object();
  for (const auto& disk : def.value("disks", json::array())) {
    const auto& src = disk["source"];
    std::string s = src.contains("path") ? text(src["path"]) : text(src["pool"]) + "/" + text(src["volume"]);
    f.emplace_back("Disk " + text(disk["target"]), s + " (" + text(disk["bus"]) + ", " + text(disk["format"]) +
                                                       (disk.value("readonly", false) ? ", read-only" : "") + ")");
  }
  for (const auto& nic : def.value("nics", json::array())) {
    std::string where = nic.contains("network") ? "network " + text(nic["network"])
                        : nic.contains("bridge") ? "bridge " + text(nic["bridge"])
                        : nic.contains("device") ? "direct " + text(nic["device"]) + " (" + text(nic["mode"]) + ")"
                                                 : "user";
    f.emplace_back("NIC " + text(nic["mac"]), where + ", " + text(nic["model"]));
  }
  if (d.contains("runtime"))
    for (auto it = d["runtime"].begin(); it != d["runtime"].end(); ++it) f.emplace_back("Runtime " + it.key(), text(it.value()));
  if (d.contains("job") && !d["job"].is_null()) f.emplace_back("Job", text(d["job"]));
  if (!d.value("labels", json::object()).empty()) {
    std::vector<std::string> l;
    for (auto it = d["labels"].begin(); it != d["labels"].end(); ++it) l.push_back(it.key() + "=" + text(it.value()));
    f.emplace_back("Labels", join(l, ", "));
  }
  printFields(f);
}

Result<json> readDefinitionFile(const std::string& file) {
  std::string content;
  if (file == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    content = ss.str();
  } else {
    auto r = fs::readFile(file, 16 << 20);
    if (!r.ok()) return r.error();
    content = *r;
  }
  if (model::looksLikeXml(content)) return json(content);  // libvirt XML
  try {
    return json::parse(content);
  } catch (const json::parse_error& e) {
    return invalidArgument(file + ": invalid JSON: " + e.what());
  }
}

// live/config flags as in virsh: --live only the running domain, --config only the definition.
json hotplugFlags(bool live, bool config) {
  json p = json::object();
  if (live && !config) {
    p["live"] = true;
    p["config"] = false;
  } else if (config && !live) {
    p["live"] = false;
    p["config"] = true;
  } else if (live && config) {
    p["live"] = true;
    p["config"] = true;
  }
  return p;
}

int editDomain(Context& ctx, const std::string& name) {
  auto conn = ctx.connection();
  if (!conn.ok()) return reportError(conn.error());
  auto cur = (*conn)->call("domain.get", {{"name", name}});
  if (!cur.ok()) return reportError(cur.error());
  uint64_t generation = (*cur)["generation"].get<uint64_t>();
  std::string original = (*cur)["definition"].dump(2) + "\n";
  std::string path = "/tmp/vmctl-edit-" + name + "-" + randomHex(4) + ".json";
  if (auto st = fs::writeFileAtomic(path, original, 0600); !st.ok()) return reportError(st.error());
  const char* editor = getenv("VISUAL");
  if (!editor || !*editor) editor = getenv("EDITOR");
  if (!editor || !*editor) editor = "vi";
  while (true) {
    std::string cmd = std::string(editor) + " '" + path + "'";
    int rc = std::system(cmd.c_str());
    if (rc != 0) {
      (void)fs::removeFile(path);
      return reportError(internalError(std::string("editor ") + editor + " failed"));
    }
    auto edited = fs::readFile(path);
    if (!edited.ok()) return reportError(edited.error());
    if (*edited == original) {
      (void)fs::removeFile(path);
      std::cout << "Domain " << name << " not changed.\n";
      return kOk;
    }
    Result<json> def = invalidArgument("");
    try {
      def = json::parse(*edited);
    } catch (const json::parse_error& e) {
      def = invalidArgument(std::string("invalid JSON: ") + e.what());
    }
    Result<json> r = def.ok() ? (*conn)->call("domain.update", {{"name", name}, {"definition", *def}, {"generation", generation}})
                              : Result<json>(def.error());
    if (r.ok()) {
      (void)fs::removeFile(path);
      std::cout << "Domain " << name << " updated (generation " << text((*r)["generation"]) << ")"
                << ((*r).value("pending_changes", false) ? "; changes apply at the next start" : "") << ".\n";
      return kOk;
    }
    std::cerr << "error: " << r.error().message << "\n";
    if (!isatty(0) || r.error().code == ErrorCode::precondition_failed) {
      std::cerr << "Your edit is kept in " << path << "\n";
      return exitCodeFor(r.error());
    }
    std::cerr << "Edit again? [y/N] ";
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y") {
      std::cerr << "Your edit is kept in " << path << "\n";
      return exitCodeFor(r.error());
    }
  }
}

}  // namespace

void registerDomainCommands(CLI::App& app, Context& ctx, std::function<int()>& action) {
  // ---- list
  {
    auto* c = app.add_subcommand("list", "List domains (running ones unless --all)");
    auto all = std::make_shared<bool>(false);
    auto state = std::make_shared<std::string>();
    auto label = std::make_shared<std::string>();
    auto type = std::make_shared<std::string>();
    auto full = std::make_shared<bool>(false);
    auto allProjects = std::make_shared<bool>(false);
    c->add_flag("-a,--all", *all, "include shut-off domains");
    c->add_option("--state", *state, "only domains in this state");
    c->add_option("-l,--label", *label, "label selector: key or key=value, comma-separated");
    c->add_option("--type", *type, "only this driver type");
    c->add_flag("--full", *full, "JSON output with definitions and runtime details");
    c->add_flag("--all-projects", *allProjects, "the domains of every project");
    c->callback([&, all, state, label, type, full, allProjects] {
      action = [&, all, state, label, type, full, allProjects] {
        client::DomainListRequest request;
        request.activeOnly = !*all && state->empty();
        request.state = *state;
        request.label = *label;
        request.type = *type;
        request.allProjects = *allProjects;
        if (!jsonOutput()) {  // the table shows summary fields only, with or without --full
          auto conn = ctx.connection();
          if (!conn.ok()) return reportError(conn.error());
          auto list = client::listDomains(**conn, request);
          if (!list.ok()) return reportError(list.error());
          printDomainTable(*list, *allProjects);
          return int{kOk};
        }
        json p = json::object();
        if (request.activeOnly) p["active"] = true;
        if (!state->empty()) p["state"] = *state;
        if (!label->empty()) p["label"] = *label;
        if (!type->empty()) p["type"] = *type;
        if (*full) p["full"] = true;
        if (*allProjects) p["all_projects"] = true;
        return callAndReport(ctx, "domain.list", p, [](const json& r) { printJson(r); });
      };
    });
  }
  // ---- define / undefine
  {
    auto* c = app.add_subcommand("define", "Define a domain from a JSON (or libvirt XML) file; - reads stdin");
    auto file = std::make_shared<std::string>();
    auto start = std::make_shared<bool>(false);
    c->add_option("file", *file, "definition file")->required();
    c->add_flag("--start", *start, "start it once defined");
    c->callback([&, file, start] {
      action = [&, file, start] {
        auto def = readDefinitionFile(*file);
        if (!def.ok()) return reportError(def.error());
        json p = {{"definition", *def}};
        if (*start) p["start"] = true;
        return callAndReport(ctx, "domain.create", p, [start](const json& r) {
          for (const auto& w : r.value("warnings", json::array())) std::cerr << "warning: " << text(w) << "\n";
          if (jsonOutput()) return printJson(r);
          std::cout << "Domain " << text(r["name"]) << " defined" << (*start ? " and started" : "") << ".\n";
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("undefine", "Remove a shut-off domain's definition");
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "domain")->required();
    c->callback([&, name] {
      action = [&, name] {
        return callAndReport(ctx, "domain.delete", {{"name", *name}}, [name](const json&) {
          if (!jsonOutput()) std::cout << "Domain " << *name << " undefined.\n";
          else printJson(json::object());
        });
      };
    });
  }
  // ---- lifecycle
  auto lifecycle = [&](const char* verb, const char* method, const char* help, const char* done) {
    auto* c = app.add_subcommand(verb, help);
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "domain")->required();
    auto paused = std::make_shared<bool>(false);
    auto timeout = std::make_shared<std::string>();
    auto noForce = std::make_shared<bool>(false);
    auto forceBoot = std::make_shared<bool>(false);
    if (std::string(verb) == "start") {
      c->add_flag("--paused", *paused, "leave the guest paused");
      c->add_flag("--force-boot", *forceBoot, "boot afresh, discarding a managed save");
    }
    if (std::string(verb) == "shutdown") {
      c->add_option("-t,--timeout", *timeout, "graceful period before destroying (default 60s)");
      c->add_flag("--no-force", *noForce, "fail at the timeout instead of destroying");
    }
    std::string m = method, d = done;
    c->callback([&, name, paused, timeout, noForce, forceBoot, m, d] {
      action = [&, name, paused, timeout, noForce, forceBoot, m, d] {
        json p = {{"name", *name}};
        if (*paused) p["paused"] = true;
        if (*forceBoot) p["force_boot"] = true;
        if (!timeout->empty()) p["timeout"] = *timeout;
        if (*noForce) p["force"] = false;
        return callAndReport(ctx, m, p, [name, d](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Domain " << *name << " " << d << ".\n";
        });
      };
    });
  };
  lifecycle("start", "domain.start", "Start a domain", "started");
  lifecycle("shutdown", "domain.shutdown", "Shut a domain down gracefully (ACPI, agent), destroying it after the timeout", "shut down");
  lifecycle("destroy", "domain.destroy", "Stop a domain immediately", "destroyed");
  lifecycle("reboot", "domain.reboot", "Reboot a domain", "is being rebooted");
  lifecycle("reset", "domain.reset", "Reset a domain (like pressing the reset button)", "was reset");
  lifecycle("suspend", "domain.suspend", "Pause a domain", "suspended");
  lifecycle("resume", "domain.resume", "Resume a paused domain", "resumed");

  // ---- saved states
  {
    auto* c = app.add_subcommand("save", "Save a running domain's state and stop it (without FILE: a managed save, resumed by the next start)");
    auto name = std::make_shared<std::string>();
    auto file = std::make_shared<std::string>();
    c->add_option("name", *name, "domain")->required();
    c->add_option("file", *file, "state file (absolute path)");
    c->callback([&, name, file] {
      action = [&, name, file] {
        json p = {{"name", *name}};
        if (!file->empty()) p["path"] = absolutePath(*file);
        return callAndReport(ctx, "domain.save", p, [name, file](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Domain " << *name << " saved" << (file->empty() ? " (managed save; `start` resumes it)" : " to " + absolutePath(*file)) << ".\n";
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("restore", "Start a shut-off domain from a state file written by save");
    auto name = std::make_shared<std::string>();
    auto file = std::make_shared<std::string>();
    auto paused = std::make_shared<bool>(false);
    c->add_option("name", *name, "domain")->required();
    c->add_option("file", *file, "state file")->required();
    c->add_flag("--paused", *paused, "leave the guest paused");
    c->callback([&, name, file, paused] {
      action = [&, name, file, paused] {
        json p = {{"name", *name}, {"path", absolutePath(*file)}};
        if (*paused) p["paused"] = true;
        return callAndReport(ctx, "domain.restore", p, [name](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Domain " << *name << " restored.\n";
        });
      };
    });
  }

  // ---- info / dumpjson / edit
  {
    auto* c = app.add_subcommand("info", "Show a domain");
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "domain")->required();
    c->callback([&, name] {
      action = [&, name] {
        return callAndReport(ctx, "domain.get", {{"name", *name}}, [](const json& r) { jsonOutput() ? printJson(r) : printDomainInfo(r); });
      };
    });
  }
  {
    auto* c = app.add_subcommand("dumpjson", "Print a domain's definition (canonical JSON)");
    auto name = std::make_shared<std::string>();
    auto live = std::make_shared<bool>(false);
    c->add_option("name", *name, "domain")->required();
    c->add_flag("--live", *live, "the running configuration (with hot-plugged devices)");
    c->callback([&, name, live] {
      action = [&, name, live] {
        return callAndReport(ctx, "domain.get", {{"name", *name}}, [live](const json& r) {
          printJson(*live && r.contains("live_definition") ? r["live_definition"] : r["definition"]);
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("dumpxml", "Print a domain's definition as libvirt domain XML");
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "domain")->required();
    c->callback([&, name] {
      action = [&, name] {
        return callAndReport(ctx, "domain.xml", {{"name", *name}}, [](const json& r) {
          jsonOutput() ? printJson(r) : void(std::cout << text(r["xml"]));
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("edit", "Edit a domain's definition in $EDITOR");
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "domain")->required();
    c->callback([&, name] { action = [&, name] { return editDomain(ctx, *name); }; });
  }
  // ---- exec
  {
    auto* c = app.add_subcommand("exec", "Run a command in the guest: vmctl exec NAME -- CMD ARGS...");
    auto name = std::make_shared<std::string>();
    auto cmd = std::make_shared<std::vector<std::string>>();
    auto env = std::make_shared<std::vector<std::string>>();
    auto timeout = std::make_shared<std::string>();
    auto input = std::make_shared<bool>(false);
    c->add_option("name", *name, "domain")->required();
    c->add_option("command", *cmd, "command and arguments (after --)")->required()->expected(-1);
    c->add_option("-e,--env", *env, "NAME=value for the command");
    c->add_option("-t,--timeout", *timeout, "how long it may run (default 60s)");
    c->add_flag("-i,--stdin", *input, "pass vmctl's standard input to the command");
    c->callback([&, name, cmd, env, timeout, input] {
      action = [&, name, cmd, env, timeout, input]() -> int {
        json p = {{"name", *name}, {"command", *cmd}};
        if (!env->empty()) p["env"] = *env;
        if (!timeout->empty()) p["timeout"] = *timeout;
        if (*input) {
          std::ostringstream ss;
          ss << std::cin.rdbuf();
          p["input"] = ss.str();
        }
        int code = kOk;
        int rc = callAndReport(ctx, "domain.exec", p, [&code](const json& r) {
          if (jsonOutput()) {
            printJson(r);
          } else {
            rawStdout() << bytesOf(r, "stdout") << std::flush;
            rawStderr() << bytesOf(r, "stderr") << std::flush;
          }
          int signal = r.value("signal", 0);
          code = signal ? 128 + signal : r.value("exit_code", 1);
        });
        return rc != kOk ? rc : code;
      };
    });
  }
  // ---- stats
  {
    auto* c = app.add_subcommand("domstats", "Statistics of one running domain, or of all");
    c->alias("stats");
    auto name = std::make_shared<std::string>();
    auto allProjects = std::make_shared<bool>(false);
    c->add_option("name", *name, "domain (default: all running)");
    c->add_flag("--all-projects", *allProjects, "without NAME: the running domains of every project");
    c->callback([&, name, allProjects] {
      action = [&, name, allProjects] {
        if (!name->empty()) return callAndReport(ctx, "domain.stats", {{"name", *name}}, [](const json& r) { printJson(r); });
        json p = json::object();
        if (*allProjects) p["all_projects"] = true;
        return callAndReport(ctx, "domain.stats_all", p, [allProjects](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::vector<std::string> headers = {"NAME", "STATE", "CPU(s)", "RSS", "BLOCK RD", "BLOCK WR", "NET RX", "NET TX"};
          if (*allProjects) headers.insert(headers.begin(), "PROJECT");
          Table t(headers);
          for (const auto& s : r) {
            std::vector<std::string> row = {entryName(s)};
            if (*allProjects) row.insert(row.begin(), entryProject(s));
            if (s.contains("error")) {
              row.push_back("error: " + text(s["error"]["message"]));
              t.add(row);
              continue;
            }
            uint64_t rd = 0, wr = 0, rx = 0, tx = 0;
            for (const auto& b : s.value("block", json::array())) {
              rd += b.value("rd_bytes", uint64_t{0});
              wr += b.value("wr_bytes", uint64_t{0});
            }
            for (const auto& n : s.value("net", json::array())) {
              rx += n.value("rx_bytes", uint64_t{0});
              tx += n.value("tx_bytes", uint64_t{0});
            }
            char cpu[32];
            std::snprintf(cpu, sizeof cpu, "%.2f", static_cast<double>(s.value("cpu_time_ns", uint64_t{0})) / 1e9);
            row.insert(row.end(), {text(s["state"]), cpu, std::to_string(s["memory"].value("rss_bytes", uint64_t{0}) >> 20) + "MiB",
                                   std::to_string(rd), std::to_string(wr), std::to_string(rx), std::to_string(tx)});
            t.add(row);
          }
          t.print();
        });
      };
    });
  }
  // ---- devices
  {
    auto* c = app.add_subcommand("attach-disk", "Attach a disk: SOURCE is a path or POOL/VOLUME");
    auto name = std::make_shared<std::string>(), source = std::make_shared<std::string>(), target = std::make_shared<std::string>();
    auto bus = std::make_shared<std::string>(), format = std::make_shared<std::string>();
    auto ro = std::make_shared<bool>(false), live = std::make_shared<bool>(false), config = std::make_shared<bool>(false);
    auto cdrom = std::make_shared<bool>(false);
    c->add_option("name", *name, "domain")->required();
    c->add_option("source", *source, "host path or POOL/VOLUME")->required();
    c->add_option("target", *target, "guest device name (vdb); chosen when omitted");
    c->add_option("--bus", *bus, "virtio, scsi, sata, ide, usb");
    c->add_option("--format", *format, "raw or qcow2");
    c->add_flag("--readonly", *ro, "read-only");
    c->add_flag("--cdrom", *cdrom, "attach as a CD-ROM");
    c->add_flag("--live", *live, "only the running domain");
    c->add_flag("--config", *config, "only the definition");
    c->callback([&, name, source, target, bus, format, ro, live, config, cdrom] {
      action = [&, name, source, target, bus, format, ro, live, config, cdrom] {
        json disk = json::object();
        if (startsWith(*source, "/")) disk["source"] = {{"path", *source}};
        else {
          auto slash = source->find('/');
          if (slash == std::string::npos) return reportError(invalidArgument("source: expected /path or POOL/VOLUME"));
          disk["source"] = {{"pool", source->substr(0, slash)}, {"volume", source->substr(slash + 1)}};
        }
        if (!target->empty()) disk["target"] = *target;
        if (!bus->empty()) disk["bus"] = *bus;
        if (!format->empty()) disk["format"] = *format;
        if (*ro) disk["readonly"] = true;
        if (*cdrom) disk["device"] = "cdrom";
        json p = hotplugFlags(*live, *config);
        p["name"] = *name;
        p["disk"] = disk;
        return callAndReport(ctx, "domain.attach_disk", p, [name](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Disk attached to " << *name << ".\n";
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("detach-disk", "Detach a disk by its target (vdb)");
    auto name = std::make_shared<std::string>(), target = std::make_shared<std::string>();
    auto live = std::make_shared<bool>(false), config = std::make_shared<bool>(false);
    c->add_option("name", *name, "domain")->required();
    c->add_option("target", *target, "guest device name")->required();
    c->add_flag("--live", *live, "only the running domain");
    c->add_flag("--config", *config, "only the definition");
    c->callback([&, name, target, live, config] {
      action = [&, name, target, live, config] {
        json p = hotplugFlags(*live, *config);
        p["name"] = *name;
        p["target"] = *target;
        return callAndReport(ctx, "domain.detach_disk", p, [name, target](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Disk " << *target << " detached from " << *name << ".\n";
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("attach-nic", "Attach a network interface");
    auto name = std::make_shared<std::string>(), network = std::make_shared<std::string>(), bridge = std::make_shared<std::string>();
    auto mac = std::make_shared<std::string>(), model = std::make_shared<std::string>();
    auto user = std::make_shared<bool>(false), live = std::make_shared<bool>(false), config = std::make_shared<bool>(false);
    auto hostLoopback = std::make_shared<bool>(false);
    c->add_option("name", *name, "domain")->required();
    c->add_option("--network", *network, "a vmm network");
    c->add_option("--bridge", *bridge, "a host bridge");
    c->add_flag("--user", *user, "user-mode networking (restricted: no connections out, forwards in only)");
    c->add_flag("--host-loopback", *hostLoopback,
                "with --user: let the guest connect out through slirp, to the internet and to the host's own loopback services");
    c->add_option("--mac", *mac, "MAC address (generated when omitted)");
    c->add_option("--model", *model, "virtio, e1000, e1000e, rtl8139");
    c->add_flag("--live", *live, "only the running domain");
    c->add_flag("--config", *config, "only the definition");
    c->callback([&, name, network, bridge, mac, model, user, hostLoopback, live, config] {
      action = [&, name, network, bridge, mac, model, user, hostLoopback, live, config] {
        json nic = json::object();
        if (!network->empty()) nic["network"] = *network;
        if (!bridge->empty()) nic["bridge"] = *bridge;
        if (*user) nic["type"] = "user";
        if (*hostLoopback) nic["host_loopback"] = true;
        if (!mac->empty()) nic["mac"] = *mac;
        if (!model->empty()) nic["model"] = *model;
        json p = hotplugFlags(*live, *config);
        p["name"] = *name;
        p["nic"] = nic;
        return callAndReport(ctx, "domain.attach_nic", p, [name](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Interface attached to " << *name << ".\n";
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("detach-nic", "Detach a network interface by MAC address");
    auto name = std::make_shared<std::string>(), mac = std::make_shared<std::string>();
    auto live = std::make_shared<bool>(false), config = std::make_shared<bool>(false);
    c->add_option("name", *name, "domain")->required();
    c->add_option("mac", *mac, "MAC address")->required();
    c->add_flag("--live", *live, "only the running domain");
    c->add_flag("--config", *config, "only the definition");
    c->callback([&, name, mac, live, config] {
      action = [&, name, mac, live, config] {
        json p = hotplugFlags(*live, *config);
        p["name"] = *name;
        p["mac"] = *mac;
        return callAndReport(ctx, "domain.detach_nic", p, [name](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Interface detached from " << *name << ".\n";
        });
      };
    });
  }
  // ---- console log and guest agent
  {
    auto* c = app.add_subcommand("console-log", "Print the last output of a domain's console");
    auto name = std::make_shared<std::string>();
    auto bytes = std::make_shared<int64_t>(65536);
    c->add_option("name", *name, "domain")->required();
    c->add_option("--bytes", *bytes, "at most this many bytes");
    c->callback([&, name, bytes] {
      action = [&, name, bytes] {
        return callAndReport(ctx, "domain.console_log", {{"name", *name}, {"bytes", *bytes}}, [](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << r.value("log", "") << std::flush;
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("guest", "Ask the guest agent: ping, info, interfaces, fsfreeze, fsthaw, shutdown");
    auto name = std::make_shared<std::string>(), command = std::make_shared<std::string>();
    c->add_option("name", *name, "domain")->required();
    c->add_option("command", *command, "request")->required();
    c->callback([&, name, command] {
      action = [&, name, command] {
        return callAndReport(ctx, "domain.guest", {{"name", *name}, {"command", *command}}, [](const json& r) { printJson(r); });
      };
    });
  }
}

}  // namespace vmm::vmctl
