// vmctl image ... and vmctl run: images, and disposable domains for CI.
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>
#include <thread>

#include "base/fs.h"
#include "base/strings.h"
#include "client/vmctl/commands.h"
#include "client/vmctl/output.h"
#include "client/vmctl/terminal_safe.h"
#include "model/units.h"

namespace vmm::vmctl {

namespace {

// A project's list has the default project's images too (those it may launch): a PROJECT
// column whenever it spans projects.
void printImageTable(const json& list, bool allProjects) {
  bool spansProjects = allProjects;
  for (const auto& i : list) spansProjects = spansProjects || entryProject(i) != entryProject(list[0]);
  std::vector<std::string> headers = {"NAME", "FORMAT", "SIZE", "MEDIA", "OS", "DESCRIPTION", "CREATED"};
  if (spansProjects) headers.insert(headers.begin(), "PROJECT");
  Table t(headers);
  for (const auto& i : list) {
    std::vector<std::string> row = {entryName(i), text(i["format"]), model::formatSize(i.value("size", uint64_t{0})),
                                    text(i.value("media", json("disk"))), text(i["os"]), text(i["description"]),
                                    text(i["created"]).substr(0, 19)};
    if (spansProjects) row.insert(row.begin(), entryProject(i));
    t.add(row);
  }
  t.print();
}

void printImageInfo(const json& i) {
  std::vector<std::pair<std::string, std::string>> f = {
      {"Name", text(i["name"])},         {"Pool", text(i["pool"])},
      {"Volume", text(i["volume"])},     {"Format", text(i["format"])},
      {"Size", model::formatSize(i.value("size", uint64_t{0}))},
      {"Media", text(i.value("media", json("disk")))},
      {"OS", text(i["os"])},             {"Arch", text(i["arch"])},
      {"Default user", text(i["default_user"])},
      {"Description", text(i["description"])},
      {"Source", text(i["source"])},     {"SHA-256", text(i.value("sha256", json("")))},
      {"Created", text(i["created"])}};
  if (i.contains("kernel")) f.emplace_back("Kernel", text(i["kernel"]));
  if (i.contains("initrd")) f.emplace_back("Initrd", text(i["initrd"]));
  if (i.contains("template") && !i["template"].empty()) f.emplace_back("Template", i["template"].dump());
  printFields(f);
}

// Set by SIGINT/SIGTERM while `vmctl run` waits: its runs are cancelled (and cleaned up).
volatile std::sig_atomic_t g_interrupted = 0;
void onInterrupt(int) { g_interrupted = 1; }

constexpr int kRunFailed = 125;  // vmm could not run the command (docker's convention)

struct RunOptions {
  std::string image, name, memory, ttl, timeout, bootTimeout, userData;
  int cpus = 0, jobs = 1;
  bool remove = false, fullCopy = false;
  std::vector<std::string> networks, env, sshKeys, labels, command;
};

Result<json> runParams(const RunOptions& o, int index) {
  json p = {{"image", o.image}, {"command", o.command}, {"remove", o.remove}};
  if (!o.name.empty()) p["name"] = o.jobs > 1 ? o.name + "-" + std::to_string(index + 1) : o.name;
  if (!o.memory.empty()) p["memory"] = o.memory;
  if (o.cpus > 0) p["vcpus"] = o.cpus;
  if (!o.networks.empty()) p["networks"] = o.networks;
  if (!o.env.empty()) p["env"] = o.env;
  if (!o.ttl.empty()) p["ttl"] = o.ttl;
  if (!o.timeout.empty()) p["timeout"] = o.timeout;
  if (!o.bootTimeout.empty()) p["boot_timeout"] = o.bootTimeout;
  if (o.fullCopy) p["full_copy"] = true;
  json labels = json::object();
  for (const auto& l : o.labels) {
    auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0) return invalidArgument("--label: expected KEY=VALUE, got " + quote(l));
    labels[l.substr(0, eq)] = l.substr(eq + 1);
  }
  if (!labels.empty()) p["labels"] = labels;
  if (!o.sshKeys.empty() || !o.userData.empty()) {
    json ci = json::object();
    json keys = json::array();
    for (const auto& f : o.sshKeys) {
      auto k = fs::readFile(f, 64 << 10);
      if (!k.ok()) return k.error().wrap("--ssh-key");
      keys.push_back(std::string(trim(*k)));
    }
    if (!keys.empty()) ci["ssh_authorized_keys"] = keys;
    if (!o.userData.empty()) {
      auto ud = fs::readFile(o.userData, 1 << 20);
      if (!ud.ok()) return ud.error().wrap("--user-data");
      ci["user_data"] = *ud;
    }
    p["cloud_init"] = ci;
  }
  return p;
}

int runDisposable(Context& ctx, const RunOptions& o) {
  if (o.command.empty()) return reportError(invalidArgument("give the command to run after --"));
  if (o.jobs < 1 || o.jobs > 256) return reportError(invalidArgument("-j: between 1 and 256"));
  auto conn = ctx.connection();
  if (!conn.ok()) return reportError(conn.error());
  auto* c = *conn;

  struct Run {
    json op;
    json final;
    bool done = false;
    size_t streamed[3] = {0, 0, 0};  // bytes of stdout (1) and stderr (2) already printed
  };
  std::vector<Run> runs(static_cast<size_t>(o.jobs));
  auto oldInt = std::signal(SIGINT, onInterrupt);
  auto oldTerm = std::signal(SIGTERM, onInterrupt);
  g_interrupted = 0;
  // A single run's output is printed as vmmd publishes it; with -j it is printed per run at the
  // end, prefixed, so that lines of different runs do not interleave.
  std::unique_ptr<client::EventStream> output;
  if (o.jobs == 1 && !jsonOutput()) {
    auto sub = c->subscribe({"operation.output"}, "");
    if (sub.ok()) output = std::move(*sub);
  }
  auto pumpOutput = [&](Millis wait) {
    while (output) {
      auto ev = output->next(Deadline::after(wait));
      if (!ev.ok()) {
        output.reset();  // the stream ended (or fell behind): the rest comes with the result
        return;
      }
      if (!*ev) return;
      wait = Millis(0);
      const json& data = (**ev)["data"];
      if ((**ev).value("type", "") != "operation.output" || runs.empty() || runs[0].done ||
          data.value("operation", "") != runs[0].op.value("id", ""))
        continue;
      int stream = data.value("stream", "") == "stderr" ? 2 : 1;
      std::string chunk = bytesOf(data, "data");
      (stream == 2 ? rawStderr() : rawStdout()) << chunk << std::flush;
      runs[0].streamed[stream] += chunk.size();
    }
  };
  int submitted = 0;
  int code = kOk;
  for (int i = 0; i < o.jobs && !g_interrupted; ++i) {
    auto params = runParams(o, i);
    if (!params.ok()) {
      reportError(params.error());
      code = kRunFailed;
      break;
    }
    auto op = c->call("domain.run", *params);
    if (!op.ok()) {
      reportError(op.error());
      code = kRunFailed;
      break;
    }
    runs[static_cast<size_t>(i)].op = *op;
    ++submitted;
  }
  // Poll in short slices so that Ctrl-C is noticed; the runs go on in vmmd meanwhile.
  bool cancelling = code != kOk;
  auto cancelAll = [&] {
    for (int i = 0; i < submitted; ++i)
      if (!runs[static_cast<size_t>(i)].done) (void)c->call("operation.cancel", {{"id", runs[static_cast<size_t>(i)].op.value("id", "")}});
  };
  if (cancelling) cancelAll();
  int remaining = submitted;
  while (remaining > 0) {
    pumpOutput(Millis(20));
    if (g_interrupted && !cancelling) {
      std::cerr << "vmctl: interrupted: cancelling " << remaining << " run(s) and removing their domains\n";
      cancelling = true;
      cancelAll();
    }
    // One pass waits at most 200 ms in all: only the first unfinished run is waited on.
    bool waited = false;
    for (int i = 0; i < submitted; ++i) {
      auto& r = runs[static_cast<size_t>(i)];
      if (r.done) continue;
      auto st = c->call("operation.wait", {{"id", r.op.value("id", "")}, {"timeout", waited ? "0s" : "200ms"}}, Millis(60000));
      waited = true;
      if (!st.ok()) {
        reportError(st.error());
        code = kRunFailed;
        r.done = true;
        --remaining;
        continue;
      }
      std::string status = st->value("status", "");
      if (status != "succeeded" && status != "failed" && status != "cancelled") continue;
      r.done = true;
      r.final = *st;
      --remaining;
      std::string prefix = o.jobs > 1 ? "[" + std::to_string(i + 1) + "] " : "";
      if (status != "succeeded") {
        Error e = st->contains("error") && (*st)["error"].is_object() ? client::errorFromWire((*st)["error"])
                                                                      : internalError("run " + status);
        std::cerr << prefix << "error: " << e.message << "\n";
        if (code == kOk) code = status == "cancelled" ? 130 : kRunFailed;
        continue;
      }
      const json& res = (*st)["result"];
      if (jsonOutput()) {
        printJson(res);
      } else {
        auto emit = [&](std::ostream& out, std::string textOut) {
          size_t shown = &out == &rawStderr() ? r.streamed[2] : r.streamed[1];
          textOut = shown <= textOut.size() ? textOut.substr(shown) : "";
          if (prefix.empty()) {
            out << textOut;
          } else {
            for (const auto& line : split(textOut, '\n', true)) out << prefix << line << "\n";
          }
          out.flush();
        };
        emit(rawStdout(), bytesOf(res, "stdout"));
        emit(rawStderr(), bytesOf(res, "stderr"));
      }
      int exitCode = res.value("exit_code", -1);
      int sig = res.value("signal", 0);
      int mine = sig ? 128 + sig : exitCode;
      if (o.jobs > 1 && !jsonOutput()) std::cerr << prefix << res.value("domain", "") << " exited " << mine << "\n";
      if (code == kOk) code = mine;
    }
  }
  std::signal(SIGINT, oldInt);
  std::signal(SIGTERM, oldTerm);
  if (g_interrupted) return 130;
  return code;
}

}  // namespace

void registerImageCommands(CLI::App& app, Context& ctx, std::function<int()>& action) {
  auto* img = app.add_subcommand("image", "Images: list, info, import, from-domain, delete");
  img->require_subcommand(1);
  {
    auto* c = img->add_subcommand("list", "List images: the project's own and the default project's");
    auto allProjects = std::make_shared<bool>(false);
    c->add_flag("--all-projects", *allProjects, "the images of every project");
    c->callback([&, allProjects] {
      action = [&, allProjects] {
        json p = json::object();
        if (*allProjects) p["all_projects"] = true;
        return callAndReport(ctx, "image.list", p, [allProjects](const json& r) {
          jsonOutput() ? printJson(r) : printImageTable(r, *allProjects);
        });
      };
    });
  }
  {
    auto* c = img->add_subcommand("info", "Show an image");
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "the image")->required();
    c->callback([&, name] {
      action = [&, name] { return callAndReport(ctx, "image.get", {{"name", *name}}, [](const json& r) { printResult(r, printImageInfo); }); };
    });
  }
  {
    auto* c = img->add_subcommand("import", "Import an image from a host file (qcow2, raw, ISO) or an http(s) URL");
    struct Opts {
      std::string name, source, kernel, initrd, os, arch, user, description, templateFile, sha256;
    };
    auto o = std::make_shared<Opts>();
    c->add_option("name", o->name, "the image's name")->required();
    c->add_option("source", o->source, "a file on the vmmd host, or an http(s) URL")->required();
    c->add_option("--kernel", o->kernel, "a kernel for direct boot (host path)");
    c->add_option("--initrd", o->initrd, "its initrd (host path)");
    c->add_option("--os", o->os, "operating system");
    c->add_option("--arch", o->arch, "architecture (default x86_64)");
    c->add_option("--default-user", o->user, "the user to log in as");
    c->add_option("--description", o->description, "free text");
    c->add_option("--template", o->templateFile, "a JSON file of domain settings launched domains start from");
    c->add_option("--sha256", o->sha256, "the file's SHA-256: the import is refused (and nothing kept) when it differs");
    c->callback([&, o] {
      action = [&, o]() -> int {
        json p = {{"name", o->name}};
        if (startsWith(o->source, "http://") || startsWith(o->source, "https://")) p["url"] = o->source;
        else p["file"] = absolutePath(o->source);
        for (auto [k, v] : {std::pair{"kernel", &o->kernel}, std::pair{"initrd", &o->initrd}})
          if (!v->empty()) p[k] = absolutePath(*v);
        for (auto [k, v] : {std::pair{"os", &o->os}, std::pair{"arch", &o->arch}, std::pair{"default_user", &o->user},
                            std::pair{"description", &o->description}, std::pair{"sha256", &o->sha256}})
          if (!v->empty()) p[k] = *v;
        if (!o->templateFile.empty()) {
          auto t = fs::readFile(o->templateFile, 1 << 20);
          if (!t.ok()) return reportError(t.error().wrap("--template"));
          auto j = json::parse(*t, nullptr, false);
          if (j.is_discarded()) return reportError(invalidArgument("--template: not valid JSON"));
          p["template"] = j;
        }
        return callAndReport(ctx, "image.import", p, [](const json& r) { printResult(r, printImageInfo); }, true);
      };
    });
  }
  {
    auto* c = img->add_subcommand("from-domain", "Make a template image of a shut-off domain's disk");
    auto name = std::make_shared<std::string>();
    auto domain = std::make_shared<std::string>();
    auto desc = std::make_shared<std::string>();
    c->add_option("domain", *domain, "the shut-off domain")->required();
    c->add_option("name", *name, "the image's name")->required();
    c->add_option("--description", *desc, "free text");
    c->callback([&, name, domain, desc] {
      action = [&, name, domain, desc] {
        json p = {{"name", *name}, {"domain", *domain}};
        if (!desc->empty()) p["description"] = *desc;
        return callAndReport(ctx, "image.from_domain", p, [](const json& r) { printResult(r, printImageInfo); }, true);
      };
    });
  }
  {
    auto* c = img->add_subcommand("delete", "Delete an image (refused while launched domains sit on it)");
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "the image")->required();
    c->callback([&, name] {
      action = [&, name] {
        return callAndReport(ctx, "image.delete", {{"name", *name}}, [name](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Image " << *name << " deleted\n";
        });
      };
    });
  }

  {
    auto* c = app.add_subcommand("launch", "Create a domain from an image and start it");
    struct Opts {
      std::string image, name, memory, ttl;
      int cpus = 0;
      bool fullCopy = false, removeOnStop = false, noStart = false;
      std::vector<std::string> networks;
    };
    auto o = std::make_shared<Opts>();
    c->add_option("image", o->image, "the image")->required();
    c->add_option("name", o->name, "the domain's name (default IMAGE-xxxxxx)");
    c->add_option("--memory", o->memory, "memory, e.g. 1GiB");
    c->add_option("--cpus", o->cpus, "vCPUs");
    c->add_option("--network", o->networks, "a NIC on this vmm network (repeatable)");
    c->add_option("--ttl", o->ttl, "vmmd removes the domain after this long, e.g. 30m");
    c->add_flag("--full-copy", o->fullCopy, "copy the image instead of a linked clone");
    c->add_flag("--rm-on-stop", o->removeOnStop, "remove the domain and its volumes once it stops");
    c->add_flag("--no-start", o->noStart, "define it only");
    c->callback([&, o] {
      action = [&, o] {
        json p = {{"image", o->image}, {"full_copy", o->fullCopy}, {"remove_on_stop", o->removeOnStop}};
        if (o->noStart) p["start"] = false;
        if (!o->name.empty()) p["name"] = o->name;
        if (!o->memory.empty()) p["memory"] = o->memory;
        if (o->cpus > 0) p["vcpus"] = o->cpus;
        if (!o->networks.empty()) p["networks"] = o->networks;
        if (!o->ttl.empty()) p["ttl"] = o->ttl;
        return callAndReport(ctx, "domain.launch", p, [](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Domain " << text(r["name"]) << " launched (" << text(r["state"]) << ")\n";
        }, true);
      };
    });
  }
  {
    auto* c = app.add_subcommand("rm", "Destroy and undefine a domain and delete the volumes its launch made");
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "the domain")->required();
    c->callback([&, name] {
      action = [&, name] {
        return callAndReport(ctx, "domain.remove", {{"name", *name}}, [name](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Domain " << *name << " removed\n";
        });
      };
    });
  }
  {
    auto* c = app.add_subcommand("run",
                                 "Run a command in a fresh VM from an image: stdout/stderr and exit code are the "
                                 "command's (125: vmm failed, 130: interrupted); --rm removes the VM afterwards, "
                                 "also on Ctrl-C");
    auto o = std::make_shared<RunOptions>();
    c->add_option("--image", o->image, "the image")->required();
    c->add_flag("--rm", o->remove, "remove the domain and its volumes when the command ends");
    c->add_option("--ttl", o->ttl, "vmmd removes the domain after this long (e.g. 30m), also after a restart");
    c->add_option("--name", o->name, "the domain's name (with -j: NAME-1 ... NAME-N)");
    c->add_option("--memory", o->memory, "memory, e.g. 512MiB");
    c->add_option("--cpus", o->cpus, "vCPUs");
    c->add_option("--network", o->networks, "a NIC on this vmm network (repeatable)");
    c->add_option("-e,--env", o->env, "NAME=value for the command (repeatable)");
    c->add_option("--timeout", o->timeout, "how long the command may run (default 1h)");
    c->add_option("--boot-timeout", o->bootTimeout, "how long to wait for the guest agent (default 5m)");
    c->add_option("-j,--jobs", o->jobs, "run N VMs at once (each runs the command); vmmd queues them when the host is full");
    c->add_option("--ssh-key", o->sshKeys, "a public key file for cloud-init (repeatable)");
    c->add_option("--user-data", o->userData, "a cloud-init user-data file");
    c->add_option("--label", o->labels, "KEY=VALUE label of the domain (repeatable)");
    c->add_flag("--full-copy", o->fullCopy, "copy the image instead of a linked clone");
    c->add_option("command", o->command, "the command and its arguments (after --)")->required();
    c->callback([&, o] { action = [&, o] { return runDisposable(ctx, *o); }; });
  }
}

}  // namespace vmm::vmctl
