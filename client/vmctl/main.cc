// vmctl: the admin shell for vmmd. See `vmctl --help`.
#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include "client/vmctl/cli.h"

int main(int argc, char** argv) {
  // Large replies: reuse heap buffers instead of faulting in fresh mmap()ed pages each time.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  std::signal(SIGPIPE, SIG_IGN);  // a closed output pipe is an error to report, not a crash
  vmm::vmctl::Context ctx;
  ctx.connect.uri = vmm::client::defaultUri();
  if (const char* t = std::getenv("VMM_TOKEN")) ctx.connect.token = t;
  std::vector<std::string> args(argv + 1, argv + argc);
  // Global options alone (vmctl -c URI) also start the shell.
  bool onlyGlobals = !args.empty();
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if ((a == "-c" || a == "--connect" || a == "--token" || a == "-o" || a == "--output") && i + 1 < args.size()) {
      ++i;
      continue;
    }
    onlyGlobals = false;
  }
  if (args.empty() || onlyGlobals) {
    if (onlyGlobals) {
      int rc = vmm::vmctl::runCommand(ctx, args);  // applies the options
      if (rc != 0 && rc != 2) return rc;
    }
    return vmm::vmctl::runShell(ctx);
  }
  return vmm::vmctl::runCommand(ctx, args);
}
