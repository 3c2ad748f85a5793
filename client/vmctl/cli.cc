#include "client/vmctl/cli.h"

#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "base/fs.h"
#include "base/strings.h"
#include "client/vmctl/commands.h"
#include "client/vmctl/output.h"

namespace vmm::vmctl {

Result<client::Connection*> Context::connection() {
  if (!conn) {
    auto c = client::connect(connect);
    if (!c.ok()) return c.error();
    conn = std::move(*c);
  }
  return conn.get();
}

namespace {

constexpr const char* kExitCodes = R"(
Exit codes: 0 success, 1 failure, 2 usage or invalid argument, 3 vmmd unreachable,
4 not found, 5 conflict (busy, already running, changed meanwhile), 6 denied,
7 timeout, 8 unsupported or unavailable here, 9 cancelled. `exec` exits with the
guest command's own status.

Connection: --connect or VMM_CONNECT: unix:///run/vmm/vmmd.sock (default),
http://HOST:PORT or https://HOST:PORT with a token from VMM_TOKEN or --token-file FILE
(--token TEXT works too, but puts the secret where ps and shell history show it).
Project: --project or VMM_PROJECT names the project that commands on domains, volumes,
images, snapshots, operations and events act in (default: the project you are bound to,
if any, else "default"); in the shell, `use NAME` switches to another.
Without a command, vmctl starts an interactive shell.)";

// The first line of FILE, without surrounding white space.
Result<std::string> readTokenFile(const std::string& file) {
  auto content = fs::readFile(file, 4096);
  if (!content.ok()) return content.error().wrap("--token-file");
  std::string token(trim(std::string_view(*content).substr(0, content->find('\n'))));
  if (token.empty()) return invalidArgument("--token-file: " + file + " holds no token");
  return token;
}

}  // namespace

Result<std::vector<std::string>> splitWords(const std::string& line) {
  std::vector<std::string> words;
  std::string cur;
  bool inWord = false;
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote) {
      if (c == quote) quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < line.size()) cur += line[++i];
      else cur += c;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      inWord = true;
    } else if (c == '\\' && i + 1 < line.size()) {
      cur += line[++i];
      inWord = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (inWord) words.push_back(cur);
      cur.clear();
      inWord = false;
    } else if (c == '#' && !inWord) {
      break;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) return invalidArgument(std::string("unterminated ") + quote + " quote");
  if (inWord) words.push_back(cur);
  return words;
}

int runCommand(Context& ctx, const std::vector<std::string>& args) {
  CLI::App app{"vmctl: manage the virtual machines and containers of a vmm host", "vmctl"};
  app.footer(kExitCodes);
  app.require_subcommand(0, 1);
  app.fallthrough();
  std::string connectUri = ctx.connect.uri, token = ctx.connect.token, tokenFile;
  std::string output = "table";
  app.add_option("-c,--connect", connectUri, "vmmd to talk to (unix socket path or URI, http(s)://HOST:PORT)");
  auto* tokenOption = app.add_option("--token", token, "bearer token for http(s) connections; visible in ps (prefer VMM_TOKEN or --token-file)");
  app.add_option("--token-file", tokenFile, "read the bearer token from this file")->excludes(tokenOption);
  std::string caCert = ctx.connect.caCert;
  bool insecure = ctx.connect.insecure;
  app.add_option("--ca-cert", caCert, "https: trust this CA or self-signed certificate");
  app.add_flag("--insecure", insecure, "https: do not verify the server certificate");
  std::string clientCert = ctx.connect.clientCert, clientKey = ctx.connect.clientKey;
  app.add_option("--client-cert", clientCert, "https: authenticate with this TLS client certificate (PEM; VMM_CLIENT_CERT)");
  app.add_option("--client-key", clientKey, "https: the client certificate's key (PEM; VMM_CLIENT_KEY; default: in the certificate file)");
  std::string project = ctx.connect.project;
  app.add_option("--project", project, "the project to act in (VMM_PROJECT; default: the one you are bound to, else \"default\")");
  app.add_option("-o,--output", output, "output format")->check(CLI::IsMember({"table", "json"}));
  app.add_flag_callback("--version", [] { std::cout << "vmctl " VMM_VERSION "\n"; throw CLI::Success(); }, "print the version");

  std::function<int()> action;
  registerDomainCommands(app, ctx, action);
  registerOtherCommands(app, ctx, action);
  registerConsoleCommand(app, ctx, action);
  registerStorageCommands(app, ctx, action);
  registerNetworkCommands(app, ctx, action);
  registerSnapshotCommands(app, ctx, action);
  registerImageCommands(app, ctx, action);

  std::vector<std::string> argvStore = {"vmctl"};
  argvStore.insert(argvStore.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argvStore) argv.push_back(a.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return kOk;
  } catch (const CLI::CallForHelp&) {
    auto subs = app.get_subcommands();
    const CLI::App* deepest = &app;
    while (!subs.empty()) {
      deepest = subs.back();
      subs = subs.back()->get_subcommands();
    }
    std::cout << deepest->help();
    return kOk;
  } catch (const CLI::Success&) {
    return kOk;  // --version, already printed
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << e.what() << "\n";
    auto subs = app.get_subcommands();
    std::cerr << "Run 'vmctl " << (subs.empty() ? std::string() : subs.back()->get_name() + " ") << "--help' for usage.\n";
    return kUsage;
  }
  setJsonOutput(output == "json");
  if (!tokenFile.empty()) {
    auto fromFile = readTokenFile(tokenFile);
    if (!fromFile.ok()) return reportError(fromFile.error());
    token = *fromFile;
  }
  if (connectUri != ctx.connect.uri || token != ctx.connect.token || caCert != ctx.connect.caCert ||
      insecure != ctx.connect.insecure || clientCert != ctx.connect.clientCert || clientKey != ctx.connect.clientKey ||
      project != ctx.connect.project) {
    ctx.connect.uri = connectUri;
    ctx.connect.token = token;
    ctx.connect.caCert = caCert;
    ctx.connect.insecure = insecure;
    ctx.connect.clientCert = clientCert;
    ctx.connect.clientKey = clientKey;
    ctx.connect.project = project;
    ctx.conn.reset();
  }
  if (!action) {
    if (ctx.interactive) return kOk;
    std::cout << app.help();
    return kUsage;
  }
  return action();
}

std::vector<std::string> commandNames() {
  CLI::App app;
  Context ctx;
  std::function<int()> action;
  registerDomainCommands(app, ctx, action);
  registerOtherCommands(app, ctx, action);
  registerConsoleCommand(app, ctx, action);
  registerStorageCommands(app, ctx, action);
  registerNetworkCommands(app, ctx, action);
  registerSnapshotCommands(app, ctx, action);
  registerImageCommands(app, ctx, action);
  std::vector<std::string> names;
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
  names.push_back("help");
  names.push_back("exit");
  names.push_back("use");
  std::sort(names.begin(), names.end());
  return names;
}

bool takesDomain(const std::string& command) {
  static const std::vector<std::string> cmds = {
      "start", "shutdown", "destroy", "reboot", "reset", "suspend", "resume", "info", "dumpjson", "edit", "undefine",
      "exec", "stats", "attach-disk", "detach-disk", "attach-nic", "detach-nic", "console-log", "guest", "domstats",
      "console", "save", "restore", "rm", "dumpxml"};
  return std::find(cmds.begin(), cmds.end(), command) != cmds.end();
}

}  // namespace vmm::vmctl
