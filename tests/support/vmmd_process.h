// Runs a real vmmd process for end-to-end and integration tests: its own state and run
// directories (removed afterwards), HTTP on a free loopback port, and helpers to call it
// through libvmmclient or run vmctl against it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/process.h"
#include "base/result.h"
#include "client/vmmclient.h"

namespace vmm::testutil {

struct VmctlResult {
  int exitCode = -1;
  std::string out, err;
};

// A reply of vmmd's HTTP API: status 0 when there was none.
struct HttpAnswer {
  int status = 0;
  nlohmann::json body;
  std::string message() const;  // the error's message, "" if none
};

class VmmdProcess {
 public:
  // `dir` holds state/ and run/; created when empty. Extra flags go to vmmd.
  explicit VmmdProcess(std::string dir = "", std::vector<std::string> extraArgs = {});
  ~VmmdProcess();  // stops vmmd (SIGTERM) and removes the directory if it made it

  Status start();                 // waits until vmmd is ready
  Status stop();                  // SIGTERM and wait
  void kill9();                   // SIGKILL and reap
  Status restart() { return start(); }

  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string socketPath() const { return dir_ + "/run/vmmd.sock"; }
  std::string roSocketPath() const { return dir_ + "/run/vmmd-ro.sock"; }
  std::string httpUrl() const { return httpUrl_; }
  int httpPort() const { return httpPort_; }
  std::string log() const;
  std::string logTail(size_t bytes = 8000) const;
  // Test teardown: destroys every domain this vmmd runs.
  void destroyAllDomains() const;
  // What a domain's console printed (vmctl console-log); "" when it cannot be read.
  std::string consoleLog(const std::string& domain) const;
  // Waits until a test guest's agent started (its console says AGENT-STARTED) and answers.
  Status waitForAgent(const std::string& domain) const;

  Result<std::unique_ptr<client::Connection>> connect() const;
  // Creates an API token (role "admin" or "read") over the RPC socket and returns its secret.
  Result<std::string> createToken(const std::string& name, const std::string& role) const;
  // One HTTP request with a bearer token: GET, DELETE, PUT or POST (a JSON body unless null).
  HttpAnswer http(const std::string& token, const std::string& method, const std::string& path,
                  const nlohmann::json& body = nullptr) const;
  // Runs vmctl with `args` against this vmmd (unix socket), optionally feeding stdin.
  VmctlResult vmctl(const std::vector<std::string>& args, const std::string& input = "",
                    const std::vector<std::pair<std::string, std::string>>& env = {}) const;

 private:
  std::string dir_;
  bool ownDir_ = false;
  std::vector<std::string> extraArgs_;
  pid_t pid_ = -1;
  std::string httpUrl_;
  int httpPort_ = 0;
};

std::string vmmdBinary();
std::string vmctlBinary();

}  // namespace vmm::testutil
