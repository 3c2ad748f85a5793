#include "tests/support/vmmd_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <httplib.h>

#include <thread>

#include "base/fs.h"
#include "base/json_util.h"
#include "base/strings.h"

namespace vmm::testutil {

// VMM_TEST_VMMD overrides the binary (e.g. to run a suite against an older build).
std::string vmmdBinary() {
  const char* env = std::getenv("VMM_TEST_VMMD");
  return env && *env ? env : VMM_BINARY_DIR "/app/vmmd";
}
std::string vmctlBinary() { return VMM_BINARY_DIR "/client/vmctl"; }

VmmdProcess::VmmdProcess(std::string dir, std::vector<std::string> extraArgs)
    : dir_(std::move(dir)), extraArgs_(std::move(extraArgs)) {
  if (dir_.empty()) {
    char tmpl[] = "/tmp/vmm-e2e-XXXXXX";
    dir_ = mkdtemp(tmpl);
    ownDir_ = true;
  }
}

VmmdProcess::~VmmdProcess() {
  if (pid_ > 0) (void)stop();
  if (ownDir_) (void)runCommand({"rm", "-rf", dir_});
}

std::string VmmdProcess::log() const { return fs::readFile(dir_ + "/vmmd.log").valueOr(""); }

Status VmmdProcess::start() {
  if (pid_ > 0) return conflict("vmmd already running");
  // A test binary that crashes or is killed at its CTest timeout takes its vmmd with it
  // (SIGTERM: vmmd stops cleanly) instead of leaving it running for the rest of the machine's
  // life. The signal follows the thread that started vmmd: start() from the test's main thread.
  std::vector<std::string> argv = {"/usr/bin/setpriv", "--pdeathsig", "TERM", "--",
                                   vmmdBinary(), "--state-dir", dir_ + "/state", "--run-dir", dir_ + "/run",
                                   "--listen", "127.0.0.1:0", "--log-level", "debug"};
  bool driversGiven = false, networkGiven = false;
  for (const auto& a : extraArgs_) {
    driversGiven = driversGiven || a == "--drivers";
    networkGiven = networkGiven || a == "--default-network";
  }
  if (!driversGiven) {
    argv.push_back("--drivers");
    argv.push_back("test");
  }
  // Tests that run vmmd in the host's network namespace must not create a bridge there.
  if (!networkGiven) {
    argv.push_back("--default-network");
    argv.push_back("no");
  }
  argv.insert(argv.end(), extraArgs_.begin(), extraArgs_.end());
  size_t logStart = log().size();
  fs::UniqueFd logFd(::open((dir_ + "/vmmd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  SpawnOptions so;
  so.stdoutFd = logFd.get();
  so.newSession = true;
  auto pid = spawnProcess(argv, so);
  if (!pid.ok()) return pid.error();
  pid_ = *pid;
  auto until = SteadyClock::now() + Millis(20000);
  while (SteadyClock::now() < until) {
    std::string text = log().substr(logStart);
    auto pos = text.find("msg=\"vmmd ready\"");
    if (pos != std::string::npos) {
      auto h = text.find("http=", pos);
      if (h != std::string::npos) {
        auto end = text.find(' ', h);
        httpUrl_ = text.substr(h + 5, end - h - 5);
        auto colon = httpUrl_.rfind(':');
        httpPort_ = static_cast<int>(parseInt(httpUrl_.substr(colon + 1)).value_or(0));
      }
      return {};
    }
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return internalError("vmmd exited during start-up: " + text);
    }
    std::this_thread::sleep_for(Millis(5));
  }
  kill9();
  return timeoutError("vmmd did not become ready: " + log().substr(logStart));
}

Status VmmdProcess::stop() {
  if (pid_ <= 0) return {};
  ::kill(pid_, SIGTERM);
  auto st = ChildReaper::wait(pid_, Deadline::after(Millis(20000)));
  if (!st.ok()) {
    kill9();
    return timeoutError("vmmd did not stop on SIGTERM");
  }
  pid_ = -1;
  return {};
}

void VmmdProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  (void)ChildReaper::wait(pid_, Deadline::after(Millis(10000)));
  pid_ = -1;
}

Result<std::unique_ptr<client::Connection>> VmmdProcess::connect() const {
  client::ConnectOptions o;
  o.uri = "unix://" + socketPath();
  o.timeout = Millis(30000);
  return client::connect(o);
}

std::string HttpAnswer::message() const {
  const nlohmann::json* e = body.is_object() ? jsonMember(body, "error") : nullptr;
  return e && e->is_object() ? jsonStringOr(*e, "message", "") : "";
}

HttpAnswer VmmdProcess::http(const std::string& token, const std::string& method, const std::string& path,
                             const nlohmann::json& body) const {
  httplib::Client c("127.0.0.1", httpPort_);
  c.set_read_timeout(30, 0);
  c.set_bearer_token_auth(token.c_str());
  std::string text = body.is_null() ? "" : body.dump();
  httplib::Result res = method == "GET"      ? c.Get(path)
                        : method == "DELETE" ? c.Delete(path)
                        : method == "PUT"    ? c.Put(path, text, "application/json")
                                             : c.Post(path, text, "application/json");
  HttpAnswer a;
  if (!res) return a;
  a.status = res->status;
  a.body = nlohmann::json::parse(res->body, nullptr, false);
  return a;
}

Result<std::string> VmmdProcess::createToken(const std::string& name, const std::string& role) const {
  VMM_ASSIGN(auto c, connect());
  VMM_ASSIGN(nlohmann::json reply, c->call("token.create", {{"name", name}, {"role", role}}));
  const nlohmann::json* token = jsonMember(reply, "token");
  if (!token || !token->is_string()) return internalError("token.create answered without a token");
  return token->get<std::string>();
}

VmctlResult VmmdProcess::vmctl(const std::vector<std::string>& args, const std::string& input,
                               const std::vector<std::pair<std::string, std::string>>& env) const {
  std::vector<std::string> argv = {vmctlBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.deadline = Deadline::after(Millis(120000));
  o.stdinData = input;
  o.env["VMM_CONNECT"] = "unix://" + socketPath();
  o.env["HOME"] = dir_;
  for (const auto& [k, v] : env) o.env[k] = v;
  auto r = runCommand(argv, o);
  VmctlResult out;
  if (!r.ok()) {
    out.err = r.error().message;
    return out;
  }
  out.exitCode = r->exitCode;
  out.out = r->out;
  out.err = r->err;
  return out;
}

std::string VmmdProcess::logTail(size_t bytes) const {
  std::string text = log();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

void VmmdProcess::destroyAllDomains() const {
  if (pid_ <= 0) return;
  auto doms = nlohmann::json::parse(vmctl({"list", "-o", "json"}).out, nullptr, false);
  if (!doms.is_array()) return;
  for (const auto& d : doms)
    if (d.is_object() && d.contains("name") && d["name"].is_string()) (void)vmctl({"destroy", d["name"].get<std::string>()});
}

std::string VmmdProcess::consoleLog(const std::string& domain) const {
  auto r = vmctl({"console-log", domain});
  return r.exitCode == 0 ? r.out : std::string();
}

Status VmmdProcess::waitForAgent(const std::string& domain) const {
  auto until = [](auto pred, Millis timeout, Millis step) {
    auto end = SteadyClock::now() + timeout;
    while (!pred()) {
      if (SteadyClock::now() >= end) return false;
      std::this_thread::sleep_for(step);
    }
    return true;
  };
  if (!until([&] { return consoleLog(domain).find("AGENT-STARTED") != std::string::npos; }, Millis(60000), Millis(100)))
    return timeoutError("the guest agent of " + domain + " did not start; console:\n" + consoleLog(domain));
  if (!until([&] { return vmctl({"exec", domain, "--", "true"}).exitCode == 0; }, Millis(30000), Millis(300)))
    return timeoutError("the guest agent of " + domain + " does not answer");
  return {};
}

}  // namespace vmm::testutil
