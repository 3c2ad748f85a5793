// The interactive shell: history, `use PROJECT`, and tab completion of commands, domain, pool,
// volume and project names.
#include <editline/readline.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

#include "base/strings.h"
#include "client/vmctl/cli.h"
#include "client/vmctl/output.h"
#include "client/vmctl/terminal_safe.h"

namespace vmm::vmctl {

namespace {

Context* g_ctx = nullptr;
std::vector<std::string> g_candidates;
size_t g_candidateIndex = 0;
std::vector<std::string> g_domainCache;
SteadyClock::time_point g_domainCacheAt;

// Names from a list call, for completion (errors give no candidates).
std::vector<std::string> namesFrom(const std::string& method, const nlohmann::json& params) {
  std::vector<std::string> out;
  auto conn = g_ctx->connection();
  if (!conn.ok()) return out;
  auto r = (*conn)->call(method, params, Millis(2000));
  if (r.ok() && r->is_array())
    for (const auto& d : *r) out.push_back(d.value("name", ""));
  return out;
}

const std::vector<std::string>& domainNames() {
  if (SteadyClock::now() - g_domainCacheAt < Millis(2000)) return g_domainCache;
  g_domainCache = namesFrom("domain.list", nlohmann::json::object());
  g_domainCacheAt = SteadyClock::now();
  return g_domainCache;
}

char* generator(const char* text, int state) {
  if (state == 0) g_candidateIndex = 0;
  std::string_view prefix(text);
  while (g_candidateIndex < g_candidates.size()) {
    const auto& c = g_candidates[g_candidateIndex++];
    if (startsWith(c, prefix)) return strdup(c.c_str());
  }
  return nullptr;
}

char** complete(const char* text, int start, int) {
  rl_attempted_completion_over = 1;
  auto words = splitWords(std::string(rl_line_buffer, static_cast<size_t>(start)));
  size_t index = words.ok() ? words->size() : 0;
  g_candidates.clear();
  if (index > 0 && words.ok() && words->back() == "--project") {
    g_candidates = namesFrom("project.list", nlohmann::json::object());
  } else if (index == 0) {
    g_candidates = commandNames();
  } else if (index == 1 && words.ok() && takesDomain((*words)[0])) {
    g_candidates = domainNames();
  } else if (index == 1 && words.ok()) {
    const std::string& cmd = (*words)[0];
    if (cmd == "operation" || cmd == "op") g_candidates = {"list", "show", "wait", "cancel"};
    else if (cmd == "host") g_candidates = {"info"};
    else if (cmd == "token") g_candidates = {"create", "list", "delete", "revoke"};
    else if (cmd == "project") g_candidates = {"list", "show", "create", "set", "delete"};
    else if (cmd == "use") g_candidates = namesFrom("project.list", nlohmann::json::object());
    else if (cmd == "snapshot") g_candidates = {"create", "list", "info", "revert", "delete", "current"};
    else if (cmd == "net") g_candidates = {"list", "define", "start", "stop", "info", "delete", "leases"};
    else if (cmd == "pool") g_candidates = {"list", "define", "start", "stop", "refresh", "info", "delete"};
    else if (cmd == "vol") g_candidates = {"list", "create", "delete", "resize", "clone", "info", "upload", "download", "wipe"};
  } else if (words.ok() && (*words)[0] == "pool" && index == 2 && (*words)[1] != "list" && (*words)[1] != "define") {
    g_candidates = namesFrom("pool.list", nlohmann::json::object());
  } else if (words.ok() && (*words)[0] == "net" && index == 2 && (*words)[1] != "list" && (*words)[1] != "define") {
    g_candidates = namesFrom("network.list", nlohmann::json::object());
  } else if (words.ok() && (*words)[0] == "snapshot" && index == 2) {
    g_candidates = domainNames();
  } else if (words.ok() && (*words)[0] == "snapshot" && index == 3 && (*words)[1] != "create" && (*words)[1] != "list" &&
             (*words)[1] != "current") {
    g_candidates = namesFrom("snapshot.list", {{"name", (*words)[2]}});
  } else if (words.ok() && (*words)[0] == "token" && index == 2 && ((*words)[1] == "delete" || (*words)[1] == "revoke")) {
    g_candidates = namesFrom("token.list", nlohmann::json::object());
  } else if (words.ok() && (*words)[0] == "project" && index == 2 && (*words)[1] != "list" && (*words)[1] != "create") {
    g_candidates = namesFrom("project.list", nlohmann::json::object());
  } else if (words.ok() && (*words)[0] == "vol" && index == 2) {
    g_candidates = namesFrom("pool.list", nlohmann::json::object());
  } else if (words.ok() && (*words)[0] == "vol" && index == 3 && (*words)[1] != "list" && (*words)[1] != "create") {
    g_candidates = namesFrom("volume.list", {{"pool", (*words)[2]}});
  }
  return rl_completion_matches(text, generator);
}

// `use NAME`: the following commands act in project NAME ("default": the principal's own again).
int useProject(Context& ctx, const std::vector<std::string>& words) {
  if (words.size() > 2) return reportError(invalidArgument("usage: use [PROJECT]"));
  if (words.size() == 1) {
    std::cout << "Project: " << (ctx.connect.project.empty() ? "default (or the one you are bound to)" : ctx.connect.project) << "\n";
    return kOk;
  }
  std::string project = words[1] == "default" ? "" : words[1];
  if (!project.empty()) {
    auto conn = ctx.connection();
    if (!conn.ok()) return reportError(conn.error());
    if (auto found = (*conn)->call("project.get", {{"name", project}}); !found.ok()) return reportError(found.error());
  }
  ctx.connect.project = project;
  ctx.conn.reset();
  return kOk;
}

std::string historyPath() {
  const char* home = getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.vmctl_history";
}

}  // namespace

int runShell(Context& ctx) {
  g_ctx = &ctx;
  ctx.interactive = true;
  bool tty = isatty(0);
  std::string hist = historyPath();
  if (tty) {
    rl_attempted_completion_function = complete;
    using_history();
    read_history(hist.c_str());
    std::cout << "vmctl interactive shell; 'help' lists commands, 'use PROJECT' switches projects, Tab completes, 'exit' or "
                 "Ctrl-D leaves.\n";
  }
  int last = kOk;
  while (true) {
    std::string line;
    if (tty) {
      std::string prompt = ctx.connect.project.empty() || ctx.connect.project == "default"
                               ? "vmctl> "
                               : "vmctl [" + terminalSafeLine(ctx.connect.project) + "]> ";
      char* raw = readline(prompt.c_str());
      if (!raw) {
        std::cout << "\n";
        break;
      }
      line = raw;
      free(raw);
    } else if (!std::getline(std::cin, line)) {
      break;
    }
    std::string trimmed(trim(line));
    if (trimmed.empty()) continue;
    if (tty) add_history(trimmed.c_str());
    auto words = splitWords(trimmed);
    if (!words.ok()) {
      last = reportError(words.error());
      continue;
    }
    if (words->empty()) continue;
    if ((*words)[0] == "exit" || (*words)[0] == "quit") break;
    if ((*words)[0] == "use") {
      last = useProject(ctx, *words);
      continue;
    }
    if ((*words)[0] == "help") (*words)[0] = "--help";
    last = runCommand(ctx, *words);
  }
  if (tty) write_history(hist.c_str());
  return last;
}

}  // namespace vmm::vmctl
