// The command of an exec or run request: "command" (program and arguments), "env"
// (NAME=value entries) and "input" (stdin), checked the same way for every operation.
#pragma once

#include <string>

#include "api/registry.h"
#include "drivers/driver.h"

namespace vmm::api {

inline Result<drivers::ExecRequest> execRequestParam(const json& p) {
  drivers::ExecRequest req;
  const json& cmd = p.contains("command") ? p["command"] : json::array();
  for (size_t i = 0; i < cmd.size(); ++i) {
    if (!cmd[i].is_string()) return invalidArgument("command[" + std::to_string(i) + "]: expected a string");
    req.argv.push_back(cmd[i].get<std::string>());
  }
  if (req.argv.empty() || req.argv[0].empty()) return invalidArgument("command: must name a program");
  if (p.contains("env") && !p["env"].is_null()) {
    for (const auto& e : p["env"]) {
      if (!e.is_string() || e.get<std::string>().find('=') == std::string::npos)
        return invalidArgument("env: entries must be NAME=value strings");
      req.env.push_back(e.get<std::string>());
    }
  }
  req.input = p.value("input", "");
  return req;
}

}  // namespace vmm::api
