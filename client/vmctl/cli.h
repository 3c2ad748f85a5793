// vmctl's commands, shared by the command line and the interactive shell.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "client/vmmclient.h"

namespace vmm::vmctl {

struct Context {
  client::ConnectOptions connect;
  bool interactive = false;
  std::unique_ptr<client::Connection> conn;
  // Connects on first use and keeps the connection (the shell reuses it).
  Result<client::Connection*> connection();
};

// Runs one command line (without the program name); returns the exit code.
int runCommand(Context& ctx, const std::vector<std::string>& args);

// For completion in the shell.
std::vector<std::string> commandNames();
// Commands whose first argument is a domain name.
bool takesDomain(const std::string& command);
// Splits a shell line into words: quotes and backslashes as in sh.
Result<std::vector<std::string>> splitWords(const std::string& line);

int runShell(Context& ctx);

}  // namespace vmm::vmctl
