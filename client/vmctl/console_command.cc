// vmctl console: an interactive session on a domain's console. The terminal goes raw; every
// key goes to the guest except Ctrl-], which detaches.
#include <CLI/CLI.hpp>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <iostream>

#include "base/socket_util.h"
#include "client/vmctl/commands.h"
#include "client/vmctl/output.h"

namespace vmm::vmctl {

namespace {

constexpr char kDetachKey = 0x1d;  // Ctrl-]

// Puts the terminal in raw mode for the lifetime of the object.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (!::isatty(fd) || ::tcgetattr(fd, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd, TCSAFLUSH, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSAFLUSH, &saved_);
  }
  bool active() const { return active_; }

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

bool writeOut(const char* data, size_t len) { return writeAllFd(STDOUT_FILENO, std::string_view(data, len), Deadline::after(Millis(30000))).ok(); }

// Relays until the console closes, the user detaches, or (without a terminal) input ends.
int relay(client::ConsoleSession& session, bool readOnly) {
  if (!session.initial.empty() && !writeOut(session.initial.data(), session.initial.size())) return 1;
  bool tty = ::isatty(STDIN_FILENO);
  bool inputOpen = !readOnly;
  char buf[16384];
  while (true) {
    pollfd fds[2] = {{session.fd.get(), POLLIN, 0}, {STDIN_FILENO, static_cast<short>(inputOpen ? POLLIN : 0), 0}};
    int n = ::poll(fds, inputOpen ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[0].revents) {
      ssize_t got = ::read(session.fd.get(), buf, sizeof buf);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        std::cerr << (tty ? "\r\n" : "") << "Console closed (the domain stopped).\n";
        return 0;
      }
      if (!writeOut(buf, static_cast<size_t>(got))) return 1;
    }
    if (inputOpen && fds[1].revents) {
      ssize_t got = ::read(STDIN_FILENO, buf, sizeof buf);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        // Piped input ended: the session ends once what was typed has been sent.
        ::usleep(200000);
        return 0;
      }
      std::string_view keys(buf, static_cast<size_t>(got));
      auto detach = keys.find(kDetachKey);
      if (detach != std::string_view::npos) keys = keys.substr(0, detach);
      if (!keys.empty() && !writeAllFd(session.fd.get(), keys, Deadline::after(Millis(10000))).ok()) return 1;
      if (detach != std::string_view::npos) {
        std::cerr << "\r\nDetached.\n";
        return 0;
      }
    }
  }
}

}  // namespace

void registerConsoleCommand(CLI::App& app, Context& ctx, std::function<int()>& action) {
  auto* c = app.add_subcommand("console", "Attach to a domain's console (detach with Ctrl-])");
  auto name = std::make_shared<std::string>();
  auto readOnly = std::make_shared<bool>(false);
  c->add_option("name", *name, "domain")->required();
  c->add_flag("--read-only", *readOnly, "only show the output; send no input");
  c->callback([&, name, readOnly] {
    action = [&, name, readOnly] {
      auto conn = ctx.connection();
      if (!conn.ok()) return reportError(conn.error());
      auto session = (*conn)->openConsole(*name);
      if (!session.ok()) return reportError(session.error());
      bool tty = ::isatty(STDIN_FILENO);
      if (tty) std::cerr << "Connected to domain " << *name << " (detach with Ctrl-])\n";
      RawTerminal raw(STDIN_FILENO);
      return relay(*session, *readOnly);
    };
  });
}

}  // namespace vmm::vmctl
