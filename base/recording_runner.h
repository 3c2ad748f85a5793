// A CommandRunner that runs nothing: it records each command (argv, standard input and what
// else would shape the child) and answers it through a responder, by default with exit status
// 0 and no output. With ScopedCommandRunner it turns the code under test into a dry run, whose
// command lines tests compare with golden files.
//
// Threading: run() and commands() may be called from any thread; the responder is called with
// the recorder's lock held, so it sees one command at a time, in recording order.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/command_runner.h"
#include "base/mutex.h"

namespace vmm {

struct RecordedCommand {
  std::vector<std::string> argv;
  std::string stdinData;
  std::map<std::string, std::string> env;
  bool clearEnv = false;
  std::string cwd;
  bool confined = false;  // RunOptions::confinement was not empty
};

class RecordingRunner final : public CommandRunner {
 public:
  // The answer to one command; an error stands for a command that could not be run.
  using Responder = std::function<Result<CommandResult>(const RecordedCommand&)>;

  RecordingRunner();
  explicit RecordingRunner(Responder responder);

  Result<CommandResult> run(const std::vector<std::string>& argv, const RunOptions& options) override;
  // Every command recorded so far, in order.
  std::vector<RecordedCommand> commands() const;

 private:
  mutable Mutex mu_;
  Responder responder_ VMM_GUARDED_BY(mu_);
  std::vector<RecordedCommand> commands_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm
