// vmctl: the admin shell for vmmd. See `vmctl --help`.
#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include "client/vmctl/cli.h"
#include "client/vmctl/terminal_safe.h"

namespace {

bool isGlobalOptionWithValue(const std::string& arg) {
  for (const char* o : {"-c", "--connect", "--token", "--token-file", "--ca-cert", "--client-cert", "--client-key", "--project",
                        "-o", "--output"})
    if (arg == o) return true;
  return false;
}

// Global options alone (vmctl -c URI) also start the shell.
bool onlyGlobalOptions(const std::vector<std::string>& args) {
  if (args.empty()) return false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (isGlobalOptionWithValue(args[i]) && i + 1 < args.size()) ++i;
    else if (args[i] != "--insecure") return false;
  }
  return true;
}

int run(const std::vector<std::string>& args) {
  vmm::vmctl::Context ctx;
  ctx.connect.uri = vmm::client::defaultUri();
  if (const char* t = std::getenv("VMM_TOKEN")) ctx.connect.token = t;
  if (const char* c = std::getenv("VMM_CLIENT_CERT")) ctx.connect.clientCert = c;
  if (const char* k = std::getenv("VMM_CLIENT_KEY")) ctx.connect.clientKey = k;
  if (const char* p = std::getenv("VMM_PROJECT")) ctx.connect.project = p;
  bool onlyGlobals = onlyGlobalOptions(args);
  if (args.empty() || onlyGlobals) {
    if (onlyGlobals) {
      int rc = vmm::vmctl::runCommand(ctx, args);  // applies the options
      if (rc != 0 && rc != 2) return rc;
    }
    return vmm::vmctl::runShell(ctx);
  }
  return vmm::vmctl::runCommand(ctx, args);
}

}  // namespace

int main(int argc, char** argv) {
  // Large replies: reuse heap buffers instead of faulting in fresh mmap()ed pages each time.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  std::signal(SIGPIPE, SIG_IGN);  // a closed output pipe is an error to report, not a crash
  vmm::vmctl::TerminalSafeOutput safeOutput;
  return run(std::vector<std::string>(argv + 1, argv + argc));
}
