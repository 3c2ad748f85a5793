// vmctl snapshot ...: domain snapshots.
#include <CLI/CLI.hpp>

#include <functional>
#include <iostream>
#include <map>

#include "client/vmctl/commands.h"
#include "client/vmctl/output.h"

namespace vmm::vmctl {

namespace {

void printSnapshotTable(const json& list) {
  Table t({"NAME", "KIND", "MEMORY", "STATE", "PARENT", "CREATED", "CURRENT"});
  for (const auto& s : list)
    t.add({text(s["name"]), text(s["kind"]), s.value("memory", false) ? "yes" : "no", text(s["domain_state"]),
           text(s.value("parent", json())), text(s["created"]).substr(0, 19), s.value("current", false) ? "*" : ""});
  t.print();
}

// Parents above children, siblings by creation time; the current snapshot is marked.
void printSnapshotTree(const json& list) {
  std::map<std::string, std::vector<const json*>> children;
  for (const auto& s : list) children[s.value("parent", json()).is_string() ? s["parent"].get<std::string>() : ""].push_back(&s);
  std::function<void(const std::string&, const std::string&)> walk = [&](const std::string& parent, const std::string& indent) {
    auto it = children.find(parent);
    if (it == children.end()) return;
    for (size_t i = 0; i < it->second.size(); ++i) {
      const json& s = *it->second[i];
      bool last = i + 1 == it->second.size();
      std::cout << indent << (parent.empty() ? "" : (last ? "`- " : "|- ")) << text(s["name"])
                << (s.value("current", false) ? "  (current)" : "") << "\n";
      walk(text(s["name"]), indent + (parent.empty() ? "" : (last ? "   " : "|  ")));
    }
  };
  walk("", "");
}

void printSnapshotInfo(const json& s) {
  std::vector<std::pair<std::string, std::string>> f = {
      {"Name", text(s["name"])},          {"Domain", text(s["domain"])},
      {"Kind", text(s["kind"])},          {"Memory", s.value("memory", false) ? "yes" : "no"},
      {"Domain state", text(s["domain_state"])}, {"Parent", text(s.value("parent", json()))},
      {"Created", text(s["created"])},    {"Current", s.value("current", false) ? "yes" : "no"},
      {"Description", text(s["description"])}};
  for (const auto& d : s.value("disks", json::array()))
    f.emplace_back("Disk " + text(d["target"]), text(d.value("file", json())) + (d.contains("backing") ? " on " + text(d["backing"]) : ""));
  printFields(f);
}

}  // namespace

void registerSnapshotCommands(CLI::App& app, Context& ctx, std::function<int()>& action) {
  auto* snap = app.add_subcommand("snapshot", "Domain snapshots: create, list, info, revert, delete, current");
  snap->require_subcommand(1);
  {
    auto* c = snap->add_subcommand("create", "Take a snapshot (internal; --external for overlays; --disk-only without memory)");
    struct Opts {
      std::string domain, name, description;
      bool diskOnly = false, external = false, memory = false, noQuiesce = false;
    };
    auto o = std::make_shared<Opts>();
    c->add_option("domain", o->domain, "the domain")->required();
    c->add_option("snapshot", o->name, "the snapshot's name (default: a timestamp)");
    c->add_flag("--disk-only", o->diskOnly, "disks only, even when the domain runs");
    c->add_flag("--external", o->external, "new overlay files instead of snapshots inside the qcow2 images");
    c->add_flag("--memory", o->memory, "include memory (the default for a running domain)");
    c->add_option("--description", o->description, "free text");
    c->add_flag("--no-quiesce", o->noQuiesce, "do not freeze guest filesystems through the agent");
    c->callback([&, o] {
      action = [&, o] {
        json p = {{"name", o->domain}, {"disk_only", o->diskOnly}, {"external", o->external}, {"quiesce", !o->noQuiesce}};
        if (o->memory) p["memory"] = true;
        if (!o->name.empty()) p["snapshot"] = o->name;
        if (!o->description.empty()) p["description"] = o->description;
        return callAndReport(ctx, "snapshot.create", p, [o](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Snapshot " << text(r["name"]) << " of " << o->domain << " created (" << text(r["kind"])
                    << (r.value("memory", false) ? ", with memory" : ", disks only") << ")\n";
        }, true);
      };
    });
  }
  {
    auto* c = snap->add_subcommand("list", "List a domain's snapshots");
    auto domain = std::make_shared<std::string>();
    auto tree = std::make_shared<bool>(false);
    c->add_option("domain", *domain, "the domain")->required();
    c->add_flag("--tree", *tree, "show parents and children");
    c->callback([&, domain, tree] {
      action = [&, domain, tree] {
        return callAndReport(ctx, "snapshot.list", {{"name", *domain}}, [tree](const json& r) {
          if (jsonOutput()) return printJson(r);
          *tree ? printSnapshotTree(r) : printSnapshotTable(r);
        });
      };
    });
  }
  {
    auto* c = snap->add_subcommand("current", "The snapshot the domain's state descends from");
    auto domain = std::make_shared<std::string>();
    c->add_option("domain", *domain, "the domain")->required();
    c->callback([&, domain] {
      action = [&, domain] {
        return callAndReport(ctx, "snapshot.current", {{"name", *domain}}, [](const json& r) {
          if (jsonOutput()) return printJson(r);
          if (r.is_null()) std::cout << "(none)\n";
          else printSnapshotInfo(r);
        });
      };
    });
  }
  auto withSnapshot = [&](const char* verb, const char* help, std::function<int(const std::string&, const std::string&, bool)> run,
                          const char* flagName, const char* flagHelp) {
    auto* c = snap->add_subcommand(verb, help);
    auto domain = std::make_shared<std::string>();
    auto name = std::make_shared<std::string>();
    auto extra = std::make_shared<bool>(false);
    c->add_option("domain", *domain, "the domain")->required();
    c->add_option("snapshot", *name, "the snapshot")->required();
    if (flagName) c->add_flag(flagName, *extra, flagHelp);
    c->callback([&, domain, name, extra, run] { action = [domain, name, extra, run] { return run(*domain, *name, *extra); }; });
  };
  withSnapshot("info", "Show a snapshot", [&](const std::string& d, const std::string& n, bool) {
    return callAndReport(ctx, "snapshot.get", {{"name", d}, {"snapshot", n}}, [](const json& r) { jsonOutput() ? printJson(r) : printSnapshotInfo(r); });
  }, nullptr, nullptr);
  withSnapshot("revert", "Revert the domain to a snapshot", [&](const std::string& d, const std::string& n, bool) {
    return callAndReport(ctx, "snapshot.revert", {{"name", d}, {"snapshot", n}}, [d, n](const json& r) {
      if (jsonOutput()) return printJson(r);
      std::cout << "Domain " << d << " reverted to " << n << " (" << text(r["state"]) << ")\n";
    }, true);
  }, nullptr, nullptr);
  withSnapshot("delete", "Delete a snapshot (children move to its parent)", [&](const std::string& d, const std::string& n, bool children) {
    return callAndReport(ctx, "snapshot.delete", {{"name", d}, {"snapshot", n}, {"children", children}}, [d, n](const json& r) {
      if (jsonOutput()) return printJson(r);
      std::cout << "Snapshot " << n << " of " << d << " deleted\n";
    }, true);
  }, "--children", "also delete its descendants");
}

}  // namespace vmm::vmctl
