// End-to-end: TLS, socket access by peer credentials, and the interactive shell on a terminal.
#include <gtest/gtest.h>
#include <httplib.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include <algorithm>

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
  auto token = vmmd.vmctl({"token", "create", "t", "--role", "read"}).out;
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
  VmmdProcess vmmd("", {"--socket-group", "nogroup", "--ro-socket-group", "*"});
  ASSERT_EQ(::chmod(vmmd.dir().c_str(), 0755), 0);  // let other users reach the sockets
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  ASSERT_EQ(::chmod((vmmd.dir() + "/run").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(testutil::vmctlBinary().c_str(), 0755), 0);
  auto as = [&](const std::string& gid, std::vector<std::string> args, const std::string& groups = "") {
    std::vector<std::string> argv = {"setpriv", "--reuid=65534", "--regid=" + gid,
                                     groups.empty() ? "--clear-groups" : "--groups=" + groups, testutil::vmctlBinary()};
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
  EXPECT_EQ(json::parse(r.out)["caller"]["role"], "admin");
  EXPECT_NE(json::parse(r.out)["caller"]["principal"].get<std::string>().find("uid 65534"), std::string::npos);
  // A supplementary member (the kernel's record of the connection, SO_PEERGROUPS): read-write
  // too. The socket file is 0660 root:nogroup, so only the group lets it connect at all.
  r = as("100", {"-c", vmmd.socketPath(), "host", "info", "-o", "json"}, "65534");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["caller"]["role"], "admin");
  // Another group: the socket file itself refuses the connection.
  r = as("100", {"-c", vmmd.socketPath(), "list"});
  EXPECT_EQ(r.exitCode, 3) << r.err;
  // The read-only socket, opened to every local user ("*"), takes anyone, read-only.
  ASSERT_EQ(::stat(vmmd.roSocketPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);
  r = as("100", {"-c", vmmd.roSocketPath(), "host", "info", "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["caller"]["role"], "read");
  r = as("100", {"-c", vmmd.roSocketPath(), "token", "create", "x", "--role", "read"});
  EXPECT_EQ(r.exitCode, 6);
  EXPECT_NE(r.err.find("token.create needs the admin role"), std::string::npos) << r.err;
}

TEST(Access, TheReadOnlySocketIsClosedToOtherUsersByDefault) {
  VmmdProcess vmmd;
  ASSERT_EQ(::chmod(vmmd.dir().c_str(), 0755), 0);
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  ASSERT_EQ(::chmod((vmmd.dir() + "/run").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(testutil::vmctlBinary().c_str(), 0755), 0);
  struct stat st;
  ASSERT_EQ(::stat(vmmd.roSocketPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, 0u);
  RunOptions o;
  o.env["HOME"] = "/tmp";
  auto r = runCommand({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", testutil::vmctlBinary(), "-c",
                       vmmd.roSocketPath(), "list"}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exitCode, 3) << r->err;  // the socket file refuses the connection
  // Root still reads through it.
  auto mine = vmmd.vmctl({"-c", vmmd.roSocketPath(), "host", "info", "-o", "json"});
  ASSERT_EQ(mine.exitCode, 0) << mine.err;
  EXPECT_EQ(json::parse(mine.out)["caller"]["role"], "read");
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

TEST(Access, PlainHttpOnlyOnLoopbackAndForTheNamesItAnswersTo) {
  {
    VmmdProcess open("", {"--listen", "0.0.0.0:0"});
    EXPECT_FALSE(open.start().ok());
    EXPECT_NE(open.log().find("refusing to serve plain HTTP on 0.0.0.0:0, which is not a loopback address"), std::string::npos)
        << open.log();
  }
  VmmdProcess vmmd;
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  auto token = vmmd.createToken("t", "read");
  ASSERT_TRUE(token.ok());
  auto statusWithHost = [&](const std::string& host) {
    httplib::Client c("127.0.0.1", vmmd.httpPort());
    c.set_bearer_token_auth(token->c_str());
    auto res = c.Get("/v1/host", httplib::Headers{{"Host", host}});
    return res ? res->status : -1;
  };
  std::string port = std::to_string(vmmd.httpPort());
  EXPECT_EQ(statusWithHost("127.0.0.1:" + port), 200);
  EXPECT_EQ(statusWithHost("localhost:" + port), 200);
  EXPECT_EQ(statusWithHost("[::1]:" + port), 200);
  // A page whose own name was rebound to 127.0.0.1 sends that name.
  EXPECT_EQ(statusWithHost("attacker.example:" + port), 421);
  EXPECT_EQ(statusWithHost("127.0.0.1.attacker.example"), 421);

  // Configured: the names it answers to (such as a proxy's). The test listens on loopback
  // only: it sends nothing beyond the host.
  std::string conf = vmmd.dir() + "/open.toml";
  ASSERT_TRUE(fs::writeFileAtomic(conf, "[http]\nallowed_hosts = [\"vmm.example\"]\n").ok());
  VmmdProcess open("", {"--config", conf});
  ASSERT_TRUE(open.start().ok()) << open.log();
  auto openToken = open.createToken("t", "read");
  ASSERT_TRUE(openToken.ok());
  for (auto [host, status] : {std::pair{"vmm.example:1", 200}, {"localhost", 421}}) {
    httplib::Client c("127.0.0.1", open.httpPort());
    c.set_bearer_token_auth(openToken->c_str());
    auto res = c.Get("/v1/host", httplib::Headers{{"Host", host}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, status) << host;
  }
}

namespace {

// vmctl run as uid 65534 in `groups` ("": none) against `vmmd`'s read-write socket.
CommandResult vmctlAsNobody(const VmmdProcess& vmmd, const std::string& groups, std::vector<std::string> args,
                            const std::string& input = "") {
  std::vector<std::string> argv = {"setpriv", "--reuid=65534", "--regid=65534",
                                   groups.empty() ? "--clear-groups" : "--groups=" + groups, testutil::vmctlBinary(),
                                   "-c", vmmd.socketPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.env["HOME"] = "/tmp";
  o.stdinData = input;
  auto r = runCommand(argv, o);
  return r.ok() ? *r : CommandResult{};
}

// Starts `vmmd` with its directories open to uid 65534 (whom vmmd itself then judges).
void openToNobody(VmmdProcess& vmmd) {
  ASSERT_EQ(::chmod(vmmd.dir().c_str(), 0755), 0);
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  ASSERT_EQ(::chmod((vmmd.dir() + "/run").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(testutil::vmctlBinary().c_str(), 0755), 0);
}

}  // namespace

TEST(Access, SocketUsersOfTheOperatorGroupAreOperators) {
  VmmdProcess vmmd("", {"--socket-group", "root", "--operator-group", "users"});
  openToNobody(vmmd);
  if (HasFatalFailure()) return;
  struct stat st;
  ASSERT_EQ(::stat(vmmd.socketPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);  // two groups: vmmd decides, by SO_PEERCRED and SO_PEERGROUPS
  auto as = [&](const std::string& groups, std::vector<std::string> args, const std::string& input = "") {
    return vmctlAsNobody(vmmd, groups, std::move(args), input);
  };
  auto r = as("100", {"host", "info", "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["caller"]["role"], "operator");
  EXPECT_EQ(as("100", {"define", "-"}, R"({"name":"mine","type":"test"})").exitCode, 0);
  r = as("100", {"define", "-"}, R"({"name":"host","type":"test","boot":{"kernel":"/etc/shadow"}})");
  EXPECT_NE(r.err.find("boot.kernel: host paths and host devices need the admin role"), std::string::npos) << r.err;
  r = as("100", {"pool", "define", "etc", "--path", "/etc"});
  EXPECT_NE(r.err.find("pool.create needs the admin role"), std::string::npos) << r.out << r.err;
  // In no group with a role, and the read-only socket closed to it: refused at connect.
  r = as("", {"list"});
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.err.find("uid 65534 may not use this socket"), std::string::npos) << r.err;
  // Root is still admin.
  auto mine = vmmd.vmctl({"host", "info", "-o", "json"});
  EXPECT_EQ(json::parse(mine.out)["caller"]["role"], "admin");
}

TEST(Access, SocketOperatorsAreBoundToTheOperatorProject) {
  VmmdProcess vmmd("", {"--socket-group", "root", "--operator-group", "users", "--operator-project", "ci"});
  openToNobody(vmmd);
  if (HasFatalFailure()) return;
  // Until the project exists its operators can do nothing.
  auto r = vmctlAsNobody(vmmd, "100", {"list"});
  EXPECT_NE(r.err.find("project \"ci\" not found"), std::string::npos) << r.err;
  ASSERT_EQ(vmmd.vmctl({"project", "create", "ci"}).exitCode, 0);
  ASSERT_EQ(vmmd.vmctl({"define", "-"}, R"({"name":"prod","type":"test"})").exitCode, 0);
  r = vmctlAsNobody(vmmd, "100", {"define", "-"}, R"({"name":"mine","type":"test"})");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  r = vmctlAsNobody(vmmd, "100", {"-o", "json", "list", "--all"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  auto listed = json::parse(r.out, nullptr, false);
  ASSERT_EQ(listed.size(), 1u) << r.out;
  EXPECT_EQ(listed[0]["name"], "mine");
  EXPECT_EQ(listed[0]["project"], "ci");
  r = vmctlAsNobody(vmmd, "100", {"--project", "default", "list"});
  EXPECT_NE(r.err.find("is bound to project ci"), std::string::npos) << r.err;
  EXPECT_NE(vmctlAsNobody(vmmd, "100", {"undefine", "prod"}).exitCode, 0);
  // Root is not bound: the operator's domain is in ci, the default project's stays.
  EXPECT_EQ(vmmd.vmctl({"--project", "ci", "info", "mine"}).exitCode, 0);
  EXPECT_EQ(vmmd.vmctl({"info", "prod"}).exitCode, 0);
  EXPECT_NE(vmmd.vmctl({"info", "mine"}).exitCode, 0);
}

TEST(Access, TlsClientCertificatesArePrincipalsByTheirFingerprint) {
  char tmpl[] = "/tmp/vmm-tls-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto makeCert = [&](const std::string& name, const std::string& cn) {
    auto gen = runCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                           "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir + "/" + name + "-key.pem", "-out",
                           dir + "/" + name + ".pem"});
    return gen.ok() && gen->success();
  };
  ASSERT_TRUE(makeCert("server", "127.0.0.1") && makeCert("ci", "ci-runner") && makeCert("stranger", "ci-runner"));
  VmmdProcess vmmd("", {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server-key.pem"});
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  auto made = vmmd.vmctl({"token", "create", "ci", "--role", "operator", "--certificate", dir + "/ci.pem"});
  ASSERT_EQ(made.exitCode, 0) << made.err;
  auto fp = runCommand({"openssl", "x509", "-in", dir + "/ci.pem", "-noout", "-fingerprint", "-sha256"});
  ASSERT_TRUE(fp.ok());
  std::string expected = toLower(fp->out.substr(fp->out.find('=') + 1));
  expected.erase(std::remove_if(expected.begin(), expected.end(), [](char ch) { return ch == ':' || ch == '\n'; }), expected.end());
  EXPECT_EQ(std::string(trim(made.out)), expected);
  auto as = [&](const std::string& who) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", vmmd.httpPort(), dir + "/" + who + ".pem", dir + "/" + who + "-key.pem");
    c->set_ca_cert_path((dir + "/server.pem").c_str());
    c->enable_server_certificate_verification(true);
    return c;
  };
  auto res = as("ci")->Get("/v1/host");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["caller"]["principal"], "certificate ci");
  EXPECT_EQ(json::parse(res->body)["caller"]["role"], "operator");
  res = as("ci")->Post("/v1/pools", R"({"name":"etc","type":"dir","path":"/etc"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403);
  // The same subject, another key: nobody.
  res = as("stranger")->Get("/v1/host");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_NE(res->body.find("unknown, expired or revoked client certificate"), std::string::npos) << res->body;
  // vmctl presents it too; without one, a client gets 401.
  auto r = vmmd.vmctl({"-c", vmmd.httpUrl(), "--ca-cert", dir + "/server.pem", "--client-cert", dir + "/ci.pem", "--client-key",
                       dir + "/ci-key.pem", "host", "info", "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["caller"]["principal"], "certificate ci");
  auto listed = vmmd.vmctl({"token", "list", "-o", "json"});
  ASSERT_EQ(listed.exitCode, 0);
  EXPECT_EQ(json::parse(listed.out)[0]["fingerprint"], expected);
  EXPECT_EQ(json::parse(listed.out)[0]["kind"], "certificate");
  // Revoked: refused.
  ASSERT_EQ(vmmd.vmctl({"token", "revoke", "ci"}).exitCode, 0);
  res = as("ci")->Get("/v1/host");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  (void)runCommand({"rm", "-rf", dir});
}
