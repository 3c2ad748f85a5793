// End-to-end: TLS, socket access by peer credentials, and the interactive shell on a terminal.
#include <gtest/gtest.h>
#include <httplib.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include "base/fs.h"
#include "base/strings.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

TEST(Access, HttpsWithConfiguredCertificate) {
  char tmpl[] = "/tmp/vmm-tls-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto gen = runCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"});
  ASSERT_TRUE(gen.ok() && gen->success()) << (gen.ok() ? gen->err : gen.error().message);
  VmmdProcess vmmd("", {"--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"});
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  EXPECT_EQ(vmmd.httpUrl().substr(0, 8), "https://");
  auto token = vmmd.vmctl({"token", "create", "t"}).out;
  token = std::string(trim(token));
  httplib::SSLClient tls("127.0.0.1", vmmd.httpPort());
  tls.set_ca_cert_path((dir + "/cert.pem").c_str());
  tls.enable_server_certificate_verification(true);
  tls.set_bearer_token_auth(token.c_str());
  auto res = tls.Get("/v1/host");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  httplib::Client plain("127.0.0.1", vmmd.httpPort());
  plain.set_read_timeout(2, 0);
  auto p = plain.Get("/v1/host");
  EXPECT_TRUE(!p || p->status != 200);
  auto r = vmmd.vmctl({"-c", vmmd.httpUrl(), "--token", token, "--ca-cert", dir + "/cert.pem", "host", "info"});
  EXPECT_EQ(r.exitCode, 0) << r.err;
  r = vmmd.vmctl({"-c", vmmd.httpUrl(), "--token", token, "host", "info"});  // unknown CA
  EXPECT_EQ(r.exitCode, 3) << r.err;
  EXPECT_EQ(vmmd.vmctl({"-c", vmmd.httpUrl(), "--token", token, "--insecure", "list"}).exitCode, 0);
  (void)runCommand({"rm", "-rf", dir});
}

TEST(Access, SocketsCheckPeerCredentials) {
  VmmdProcess vmmd("", {"--socket-group", "nogroup"});
  ASSERT_EQ(::chmod(vmmd.dir().c_str(), 0755), 0);  // let other users reach the sockets
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  ASSERT_EQ(::chmod((vmmd.dir() + "/run").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(testutil::vmctlBinary().c_str(), 0755), 0);
  auto as = [&](const std::string& gid, std::vector<std::string> args) {
    std::vector<std::string> argv = {"setpriv", "--reuid=65534", "--regid=" + gid, "--clear-groups", testutil::vmctlBinary()};
    argv.insert(argv.end(), args.begin(), args.end());
    RunOptions o;
    o.env["HOME"] = "/tmp";
    auto r = runCommand(argv, o);
    return r.ok() ? *r : CommandResult{};
  };
  struct stat st;
  ASSERT_EQ(::stat(vmmd.socketPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  // nobody:nogroup is in the socket group: read-write.
  auto r = as("65534", {"-c", vmmd.socketPath(), "define", "-"});
  EXPECT_EQ(r.exitCode, 2);  // reached vmmd: empty stdin is not a definition
  r = as("65534", {"-c", vmmd.socketPath(), "host", "info", "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["caller"]["access"], "write");
  EXPECT_NE(json::parse(r.out)["caller"]["principal"].get<std::string>().find("uid 65534"), std::string::npos);
  // Another group: the socket file itself refuses the connection.
  r = as("100", {"-c", vmmd.socketPath(), "list"});
  EXPECT_EQ(r.exitCode, 3) << r.err;
  // The read-only socket takes anyone, read-only.
  r = as("100", {"-c", vmmd.roSocketPath(), "host", "info", "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["caller"]["access"], "read");
  r = as("100", {"-c", vmmd.roSocketPath(), "token", "create", "x"});
  EXPECT_EQ(r.exitCode, 6);
  EXPECT_NE(r.err.find("read-only"), std::string::npos);
}

TEST(Access, InteractiveShellCompletesCommandsAndNames) {
  VmmdProcess vmmd;
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  ASSERT_EQ(vmmd.vmctl({"define", "-"}, R"({"name":"alpha-web","type":"test"})").exitCode, 0);
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("VMM_CONNECT", vmmd.socketPath().c_str(), 1);
    setenv("HOME", vmmd.dir().c_str(), 1);
    setenv("TERM", "dumb", 1);
    execl(testutil::vmctlBinary().c_str(), "vmctl", nullptr);
    _exit(127);
  }
  std::string seen;
  auto readUntil = [&](const std::string& what, int ms) {
    auto until = SteadyClock::now() + Millis(ms);
    while (seen.find(what) == std::string::npos && SteadyClock::now() < until) {
      pollfd p{master, POLLIN, 0};
      if (poll(&p, 1, 100) > 0) {
        char buf[4096];
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0) break;
        seen.append(buf, static_cast<size_t>(n));
      }
    }
    return seen.find(what) != std::string::npos;
  };
  ASSERT_TRUE(readUntil("vmctl> ", 5000)) << seen;
  // "inf<Tab> al<Tab>" completes to "info alpha-web".
  ASSERT_EQ(write(master, "inf\t", 4), 4);
  usleep(200000);
  ASSERT_EQ(write(master, "al\t\n", 4), 4);
  EXPECT_TRUE(readUntil("shutoff", 5000)) << seen;
  EXPECT_NE(seen.find("alpha-web"), std::string::npos) << seen;
  EXPECT_NE(seen.find("shutoff"), std::string::npos) << seen;
  ASSERT_EQ(write(master, "exit\n", 5), 5);
  int status = 0;
  for (int i = 0; i < 50 && waitpid(pid, &status, WNOHANG) == 0; ++i) usleep(100000);
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  close(master);
  // History was saved.
  EXPECT_NE(fs::readFile(vmmd.dir() + "/.vmctl_history").valueOr("").find("alpha-web"), std::string::npos);  // libedit escapes spaces
}
