#include <CLI/CLI.hpp>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <map>

#include "base/fs.h"
#include "base/strings.h"
#include "client/vmctl/commands.h"
#include "client/vmctl/output.h"
#include "client/vmctl/terminal_safe.h"
#include "model/units.h"

namespace vmm::vmctl {

using json = nlohmann::json;

namespace {

std::atomic<bool> g_interrupted{false};

// vmmd before roles said read or write access.
std::string callerRole(const json& caller) { return text(caller.contains("role") ? caller["role"] : caller.value("access", json())); }

void printHostInfo(const json& r) {
  const auto& v = r["vmm"];
  const auto& h = r["host"];
  std::vector<std::pair<std::string, std::string>> f = {
      {"vmm", "vmmd " + text(v["version"]) + " (API " + text(v["api_version"]) + "), pid " + text(v["pid"]) + ", up " +
                  text(v["uptime_seconds"]) + "s"},
      {"State", text(v["state_dir"]) + " (schema " + text(v["state_schema"]) + ")"},
      {"Host", text(h["hostname"]) + ", Linux " + text(h["kernel"]) + " " + text(h["arch"])},
      {"CPUs", text(h["cpus"])},
      {"Memory", std::to_string(h.value("memory_bytes", uint64_t{0}) >> 20) + " MiB"},
      {"KVM", h["kvm"].value("available", false) ? "available" : "no: " + text(h["kvm"]["reason"])},
      {"cgroups", text(h["cgroups"]["layout"])},
  };
  for (auto it = r["drivers"].begin(); it != r["drivers"].end(); ++it) {
    const auto& d = it.value();
    std::string s = d.value("available", false) ? "available" : "unavailable: " + text(d["reason"]);
    if (!text(d["version"]).empty()) s += ", " + text(d["version"]);
    if (d.contains("details") && d["details"].contains("accelerator")) s += ", accelerator " + text(d["details"]["accelerator"]);
    f.emplace_back("Driver " + it.key(), s);
  }
  std::vector<std::string> counts;
  for (auto it = r["domains"].begin(); it != r["domains"].end(); ++it)
    if (it.value().get<int>() > 0) counts.push_back(text(it.value()) + " " + it.key());
  f.emplace_back("Domains", counts.empty() ? "none" : join(counts, ", "));
  if (r.contains("capacity") && r["capacity"].is_object()) {
    const auto& c = r["capacity"];
    f.emplace_back("Launch budget", std::to_string(c.value("used_memory_bytes", uint64_t{0}) >> 20) + " of " +
                                        std::to_string(c.value("memory_bytes", uint64_t{0}) >> 20) + " MiB memory, " +
                                        text(c["used_vcpus"]) + " of " + text(c["vcpus"]) + " vCPUs in use");
  }
  if (r.contains("caller")) f.emplace_back("You", text(r["caller"]["principal"]) + " (" + callerRole(r["caller"]) + ")");
  printFields(f);
}

void printOperations(const json& ops, bool allProjects) {
  std::vector<std::string> headers = {"ID", "KIND", "OBJECT", "PRINCIPAL", "STATUS", "CREATED", "ERROR"};
  if (allProjects) headers.insert(headers.begin(), "PROJECT");
  Table t(headers);
  for (const auto& op : ops) {
    std::vector<std::string> row = {text(op["id"]), text(op["kind"]), entryName(op, "object"), text(op.value("principal", json())),
                                    text(op["status"]), timestampText(op["created"]),
                                    op["error"].is_object() ? text(op["error"]["message"]) : ""};
    if (allProjects) row.insert(row.begin(), entryProject(op, "object"));
    t.add(row);
  }
  t.print();
}

void printEvent(const json& e) {
  if (jsonOutput()) {
    std::cout << dumpJson(e) << std::endl;
    return;
  }
  std::string line = text(e["time"]) + " " + text(e["type"]) + " " + text(e["object"]);
  const auto& d = e["data"];
  if (d.is_object()) {
    for (auto it = d.begin(); it != d.end(); ++it) {
      if (it.key() == "domain" || it.value().is_object() || it.value().is_array()) continue;
      line += " " + it.key() + "=" + text(it.value());
    }
  }
  std::cout << terminalSafeLine(line) << std::endl;
}

std::string tokenExpiry(const json& token) {
  json expires = token.value("expires", json());
  if (expires.is_null()) return "never";
  return timestampText(expires) + (token.value("expired", false) ? " (expired)" : "");
}

void printTokens(const json& tokens) {
  Table t({"NAME", "KIND", "ROLE", "PROJECT", "EXPIRES", "DESCRIPTION"});
  for (const auto& x : tokens)
    t.add({text(x["name"]), text(x.value("kind", json("token"))), text(x["role"]), text(x.value("project", json())), tokenExpiry(x),
           text(x.value("description", json()))});
  t.print();
}

std::string durationText(double ms) {
  char buf[32];
  if (ms < 1000) std::snprintf(buf, sizeof buf, "%.1fms", ms);
  else std::snprintf(buf, sizeof buf, "%.2fs", ms / 1000);
  return buf;
}

void printAudit(const json& records) {
  Table t({"TIME", "PRINCIPAL", "METHOD", "OBJECT", "RESULT", "DURATION"});
  for (const auto& r : records)
    t.add({timestampText(r["time"]), text(r["principal"]), text(r["method"]), text(r["object"]), text(r["result"]),
           durationText(r.value("duration_ms", 0.0))});
  t.print();
}

// project create and set take the same options; set sends only those given.
struct ProjectOptions {
  std::string name;
  bool restricted = false, unrestricted = false;
  std::map<std::string, std::string> values;  // by option: "description", "pools", "limit-vcpus", ...
  std::map<std::string, CLI::Option*> options;
  const std::string* given(const std::string& option) const {
    return options.at(option)->count() ? &values.at(option) : nullptr;
  }
};

constexpr const char* kLimits[] = {"domains", "vcpus", "memory", "disk", "running"};

void addProjectOptions(CLI::App* c, ProjectOptions& o) {
  c->add_option("name", o.name, "the project (1-16 of a-z, 0-9 and -)")->required();
  auto add = [&](const std::string& option, const std::string& help, const std::string& type = "TEXT") {
    o.options[option] = c->add_option("--" + option, o.values[option], help)->type_name(type);
  };
  add("description", "what the project is for");
  auto* r = c->add_flag("--restricted", o.restricted,
                        "no host paths or host devices in it, for any role, admins too (the default for a new project)");
  c->add_flag("--unrestricted", o.unrestricted, "admins may use host paths and host devices in it")->excludes(r);
  add("pools", "only these storage pools, comma-separated (\"\": any)", "LIST");
  add("networks", "only these networks, comma-separated (\"\": any)", "LIST");
  add("images", "only these images of the default project, comma-separated (\"\": any; its own images are always allowed)",
      "LIST");
  add("bridges", "host bridges its NICs may join, comma-separated (\"\": none)", "LIST");
  add("limit-domains", "at most this many defined domains (none: no limit)", "N");
  add("limit-vcpus", "at most this many vCPUs over its domains (none: no limit)", "N");
  add("limit-memory", "at most this much memory over its domains, e.g. 16GiB (none: no limit)", "SIZE");
  add("limit-disk", "at most this much volume capacity, e.g. 500GiB (none: no limit)", "SIZE");
  add("limit-running", "at most this many domains running at once; launches wait in line (none: no limit)", "N");
}

// The keys the options give: description, restrictions, limits (a null limit: none).
Result<json> projectFields(const ProjectOptions& o) {
  json out = json::object(), restrictions = json::object(), limits = json::object();
  if (auto* d = o.given("description")) out["description"] = *d;
  if (o.restricted || o.unrestricted) restrictions["restricted"] = o.restricted;
  for (const char* key : {"pools", "networks", "images", "bridges"})
    if (auto* v = o.given(key)) restrictions[key] = split(*v, ',', true);
  for (const char* key : kLimits) {
    std::string option = std::string("limit-") + key;
    auto* v = o.given(option);
    if (!v) continue;
    if (*v == "none") {
      limits[key] = nullptr;
    } else if (std::string_view(key) == "memory" || std::string_view(key) == "disk") {
      auto size = model::parseSize(*v);
      if (!size.ok()) return invalidArgument("--" + option + ": " + size.error().message);
      limits[key] = *size;
    } else if (auto n = parseUint(*v)) {
      limits[key] = *n;
    } else {
      return invalidArgument("--" + option + ": expected a number or none, got " + quote(*v));
    }
  }
  if (!restrictions.empty()) out["restrictions"] = restrictions;
  if (!limits.empty()) out["limits"] = limits;
  return out;
}

}  // namespace

void registerOtherCommands(CLI::App& app, Context& ctx, std::function<int()>& action) {
  // ---- host
  {
    auto* host = app.add_subcommand("host", "The host and vmmd");
    host->require_subcommand(1);
    auto* info = host->add_subcommand("info", "Host, daemon and driver capabilities");
    info->callback([&] {
      action = [&] { return callAndReport(ctx, "host.info", json::object(), [](const json& r) { jsonOutput() ? printJson(r) : printHostInfo(r); }); };
    });
  }
  // ---- operations
  {
    auto* op = app.add_subcommand("operation", "Async operations");
    op->alias("op");
    op->require_subcommand(1);
    auto* list = op->add_subcommand("list", "List operations");
    auto active = std::make_shared<bool>(false);
    auto allProjects = std::make_shared<bool>(false);
    list->add_flag("--active", *active, "only pending and running ones");
    list->add_flag("--all-projects", *allProjects, "those of every project");
    list->callback([&, active, allProjects] {
      action = [&, active, allProjects] {
        json p = json::object();
        if (*active) p["active"] = true;
        if (*allProjects) p["all_projects"] = true;
        return callAndReport(ctx, "operation.list", p, [allProjects](const json& r) {
          jsonOutput() ? printJson(r) : printOperations(r, *allProjects);
        });
      };
    });
    auto id = std::make_shared<std::string>();
    auto* show = op->add_subcommand("show", "Show an operation");
    show->add_option("id", *id, "operation id")->required();
    show->callback([&, id] { action = [&, id] { return callAndReport(ctx, "operation.get", {{"id", *id}}, [](const json& r) { printJson(r); }); }; });
    auto* wait = op->add_subcommand("wait", "Wait for an operation and show it; exits non-zero if it failed");
    auto timeout = std::make_shared<std::string>("1h");
    wait->add_option("id", *id, "operation id")->required();
    wait->add_option("-t,--timeout", *timeout, "how long to wait");
    wait->callback([&, id, timeout] {
      action = [&, id, timeout]() -> int {
        auto conn = ctx.connection();
        if (!conn.ok()) return reportError(conn.error());
        auto d = parseDuration(*timeout);
        if (!d) return reportError(invalidArgument("--timeout: expected a duration such as 30s"));
        auto cur = (*conn)->call("operation.get", {{"id", *id}});
        if (!cur.ok()) return reportError(cur.error());
        auto done = (*conn)->waitOperation(*cur, Deadline::after(*d), jsonOutput() ? nullptr : std::function<void(const json&)>(showProgress));
        endProgress();
        if (!done.ok()) return reportError(done.error());
        printJson(*done);
        std::string status = done->value("status", "");
        if (status == "succeeded") return kOk;
        if (status == "cancelled") return kCancelled;
        return (*done)["error"].is_object() ? exitCodeFor(client::errorFromWire((*done)["error"])) : kFailed;
      };
    });
    auto* cancel = op->add_subcommand("cancel", "Cancel an operation");
    cancel->add_option("id", *id, "operation id")->required();
    cancel->callback([&, id] { action = [&, id] { return callAndReport(ctx, "operation.cancel", {{"id", *id}}, [](const json& r) { printJson(r); }); }; });
  }
  // ---- events
  {
    auto* ev = app.add_subcommand("events", "Follow events as they happen (Ctrl-C to stop)");
    auto types = std::make_shared<std::vector<std::string>>();
    auto object = std::make_shared<std::string>();
    auto count = std::make_shared<int>(0);
    auto timeout = std::make_shared<std::string>();
    ev->add_option("-t,--type", *types, "type prefix: domain, operation, storage, network (repeatable)");
    ev->add_option("--object", *object, "only this object, e.g. domains/web1");
    ev->add_option("-n,--count", *count, "exit after this many events");
    ev->add_option("--timeout", *timeout, "exit after this long");
    ev->callback([&, types, object, count, timeout] {
      action = [&, types, object, count, timeout]() -> int {
        auto conn = ctx.connection();
        if (!conn.ok()) return reportError(conn.error());
        Deadline until = Deadline::never();
        if (!timeout->empty()) {
          auto d = parseDuration(*timeout);
          if (!d) return reportError(invalidArgument("--timeout: expected a duration such as 30s"));
          until = Deadline::after(*d);
        }
        auto stream = (*conn)->subscribe(*types, *object);
        if (!stream.ok()) return reportError(stream.error());
        g_interrupted = false;
        struct sigaction sa {};
        sa.sa_handler = [](int) { g_interrupted = true; };
        struct sigaction old {};
        sigaction(SIGINT, &sa, &old);
        int seen = 0;
        int rc = kOk;
        while (!g_interrupted && !until.expired()) {
          auto e = (*stream)->next(Deadline::after(Millis(200)).earlier(until));
          if (!e.ok()) {
            rc = reportError(e.error());
            break;
          }
          if (!e->has_value()) continue;
          printEvent(**e);
          if ((**e).value("type", "") == "events.overflow") {
            rc = kFailed;
            break;
          }
          if (*count > 0 && ++seen >= *count) break;
        }
        sigaction(SIGINT, &old, nullptr);
        return rc;
      };
    });
  }
  // ---- tokens
  {
    auto* tok = app.add_subcommand("token", "HTTP API tokens");
    tok->require_subcommand(1);
    struct TokenOptions {
      std::string name, role, expires, description, certificate, project;
    };
    auto o = std::make_shared<TokenOptions>();
    auto* create = tok->add_subcommand("create", "Create a token; its secret is printed once");
    create->add_option("name", o->name, "token name")->required();
    create->add_option("--role", o->role,
                       "read (sees everything but guest output), operator (domains, volumes, images, snapshots, exec "
                       "and consoles; no host paths) or admin (everything: root on the host); required, so that "
                       "nobody hands out root by leaving it out")
        ->required()
        ->check(CLI::IsMember({"read", "operator", "admin"}));
    create->add_option("--expires", o->expires, "the token stops working this long after its creation, e.g. 30d (default never)");
    create->add_option("--description", o->description, "what the token is for");
    // Its own option: the global --project (and VMM_PROJECT) only says where calls act.
    create->add_option("--project", o->project, "bind the token to this project: it acts there only and sees nothing else");
    create->add_option("--certificate", o->certificate,
                       "trust this TLS client certificate (PEM file) instead of making a secret; prints its fingerprint");
    create->callback([&, o] {
      action = [&, o] {
        json p = {{"name", o->name}, {"role", o->role}};
        if (!o->expires.empty()) p["expires"] = o->expires;
        if (!o->description.empty()) p["description"] = o->description;
        if (!o->project.empty()) p["project"] = o->project;
        if (!o->certificate.empty()) {
          auto pem = fs::readFile(o->certificate, 64 << 10);
          if (!pem.ok()) return reportError(pem.error().wrap("--certificate"));
          p["certificate"] = *pem;
        }
        return callAndReport(ctx, "token.create", p, [](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << text(r.contains("token") ? r["token"] : r["fingerprint"]) << "\n";
        });
      };
    });
    auto* list = tok->add_subcommand("list", "List tokens");
    list->callback([&] {
      action = [&] { return callAndReport(ctx, "token.list", json::object(), [](const json& r) { printResult(r, printTokens); }); };
    });
    auto* del = tok->add_subcommand("delete", "Revoke a token");
    del->alias("revoke");
    del->add_option("name", o->name, "token name")->required();
    del->callback([&, o] {
      action = [&, o] {
        return callAndReport(ctx, "token.delete", {{"name", o->name}}, [o](const json&) {
          if (!jsonOutput()) std::cout << "Token " << o->name << " revoked.\n";
        });
      };
    });
  }
  // ---- projects
  {
    auto* proj = app.add_subcommand("project", "Projects, the namespaces of domains, volumes, images and operations: "
                                               "list, show, create, set, delete");
    proj->require_subcommand(1);
    proj->add_subcommand("list", "List projects with their usage and limits")->callback([&] {
      action = [&] { return callAndReport(ctx, "project.list", json::object(), [](const json& r) { printResult(r, printProjectTable); }); };
    });
    auto name = std::make_shared<std::string>();
    auto* show = proj->add_subcommand("show", "Show a project: restrictions, limits and usage");
    show->add_option("name", *name, "the project")->required();
    show->callback([&, name] {
      action = [&, name] { return callAndReport(ctx, "project.get", {{"name", *name}}, [](const json& r) { printResult(r, printProjectInfo); }); };
    });
    auto created = std::make_shared<ProjectOptions>();
    auto* create = proj->add_subcommand("create", "Create a project (restricted unless --unrestricted)");
    addProjectOptions(create, *created);
    create->callback([&, created] {
      action = [&, created] {
        auto def = projectFields(*created);
        if (!def.ok()) return reportError(def.error());
        (*def)["name"] = created->name;
        if (def->contains("limits")) {
          auto& limits = (*def)["limits"];
          for (const char* key : kLimits)
            if (limits.contains(key) && limits[key].is_null()) limits.erase(key);  // none: not set
        }
        return callAndReport(ctx, "project.create", {{"definition", *def}}, [created](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Project " << created->name << " created.\n";
        });
      };
    });
    auto changed = std::make_shared<ProjectOptions>();
    auto* set = proj->add_subcommand("set", "Change a project's description, restrictions or limits (those given)");
    addProjectOptions(set, *changed);
    set->callback([&, changed] {
      action = [&, changed] {
        auto changes = projectFields(*changed);
        if (!changes.ok()) return reportError(changes.error());
        if (changes->empty()) return reportError(invalidArgument("nothing to change: give --description, a restriction or a limit"));
        return callAndReport(ctx, "project.update", {{"name", changed->name}, {"changes", *changes}}, [changed](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Project " << changed->name << " updated.\n";
        });
      };
    });
    auto* del = proj->add_subcommand("delete", "Delete a project (it must hold no domains, volumes or tokens)");
    del->add_option("name", *name, "the project")->required();
    del->callback([&, name] {
      action = [&, name] {
        return callAndReport(ctx, "project.delete", {{"name", *name}}, [name](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Project " << *name << " deleted.\n";
        });
      };
    });
  }
  // ---- audit trail
  {
    auto* audit = app.add_subcommand("audit", "Calls that needed more than the read role, refused ones too, newest last");
    struct AuditOptions {
      std::string principal, method, object;
      int limit = 0;
    };
    auto o = std::make_shared<AuditOptions>();
    audit->add_option("--principal", o->principal, "only calls of this principal, e.g. \"token ci\"");
    audit->add_option("--method", o->method, "only this method, or a group of them (domain)");
    audit->add_option("--object", o->object, "only calls on this object, e.g. domains/web1");
    audit->add_option("-n,--limit", o->limit, "at most this many, the newest (default 100)")->check(CLI::Range(1, 10000));
    audit->callback([&, o] {
      action = [&, o] {
        json p = json::object();
        for (auto [key, value] : {std::pair{"principal", &o->principal}, std::pair{"method", &o->method}, std::pair{"object", &o->object}})
          if (!value->empty()) p[key] = *value;
        if (o->limit > 0) p["limit"] = o->limit;
        return callAndReport(ctx, "audit.list", p, [](const json& r) { printResult(r, printAudit); });
      };
    });
  }
}

}  // namespace vmm::vmctl
