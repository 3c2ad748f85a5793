// Registration of vmctl's commands on a CLI11 app. Each command sets `action` when chosen.
#pragma once

#include <functional>

#include "client/vmctl/cli.h"

namespace CLI {
class App;
}

namespace vmm::vmctl {

void registerDomainCommands(CLI::App& app, Context& ctx, std::function<int()>& action);
void registerOtherCommands(CLI::App& app, Context& ctx, std::function<int()>& action);
void registerConsoleCommand(CLI::App& app, Context& ctx, std::function<int()>& action);
void registerStorageCommands(CLI::App& app, Context& ctx, std::function<int()>& action);
void registerNetworkCommands(CLI::App& app, Context& ctx, std::function<int()>& action);
void registerSnapshotCommands(CLI::App& app, Context& ctx, std::function<int()>& action);
void registerImageCommands(CLI::App& app, Context& ctx, std::function<int()>& action);

// Runs `method` (waiting for it when async) and reports errors; `done` prints the result.
int callAndReport(Context& ctx, const std::string& method, const nlohmann::json& params,
                  const std::function<void(const nlohmann::json&)>& done, bool showProgress = false,
                  Millis timeout = Millis(24LL * 3600 * 1000));

}  // namespace vmm::vmctl
