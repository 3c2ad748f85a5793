// What a real QEMU (TCG) guest exposes on the host through its display and a user-mode NIC:
//   - a VNC display without an address is a unix socket in the domain's 0700 runtime directory:
//     the QEMU process owns no listening TCP socket, root gets an RFB greeting, an unprivileged
//     uid cannot connect;
//   - a display on a TCP address offers VNC authentication (not None) with a password that
//     domain.get shows to admins only (read-only callers and definitions see no password); a
//     client logs in with it and gets the display's size, a wrong password is refused; SPICE
//     on TCP links its main channel with the password (RSA-OAEP ticket) and refuses another;
//     a vmmd restarted while the guests run reports both displays as before;
//   - a guest with a user-mode NIC (restrict=on, defined or hot-plugged) cannot connect to a
//     listener on the host's 127.0.0.1 through slirp's 10.0.2.2; with host_loopback it can.
//
// The binary runs in network and mount namespaces of its own (made in main()): QEMU's TCP
// sockets and slirp's host side are in the test's namespace, whose loopback is the "host".
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <grp.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/mutex.h"
#include "base/process.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "tests/support/private_netns.h"
#include "tests/support/process_scan.h"
#include "tests/support/require.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmctlResult;
using testutil::VmmdProcess;
using testutil::guestDir;
using testutil::guestReady;
using testutil::waitFor;

namespace {

// Inodes of the TCP sockets in LISTEN state (st 0A) in PID's network namespace.
std::set<std::string> listeningTcpInodes(pid_t pid) {
  std::set<std::string> out;
  for (const char* file : {"tcp", "tcp6"}) {
    auto text = fs::readFile("/proc/" + std::to_string(pid) + "/net/" + file, 1 << 20).valueOr("");
    auto lines = split(text, '\n', true);
    for (size_t i = 1; i < lines.size(); ++i) {
      auto f = split(lines[i], ' ', true);
      if (f.size() > 9 && f[3] == "0A") out.insert(f[9]);
    }
  }
  return out;
}

// Inodes of the sockets PID holds open.
std::set<std::string> socketInodes(pid_t pid) {
  std::set<std::string> out;
  for (const auto& t : testutil::openDescriptors(pid))
    if (startsWith(t, "socket:[")) out.insert(t.substr(8, t.size() - 9));
  return out;
}

// The listening TCP sockets PID owns.
std::set<std::string> tcpListenersOf(pid_t pid) {
  std::set<std::string> out, listening = listeningTcpInodes(pid);
  for (const auto& inode : socketInodes(pid))
    if (listening.count(inode)) out.insert(inode);
  return out;
}

// connect(2) to a unix socket as uid/gid 65534 (nobody) in a child: 0, or the errno.
int connectAsNobody(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  pid_t pid = ::fork();
  if (pid == 0) {  // async-signal-safe calls only
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(255);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) ::_exit(254);
    ::_exit(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 253;
}

bool readExact(int fd, std::string& out, size_t n) {
  out.clear();
  while (out.size() < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return false;
    char buf[64];
    ssize_t got = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (got <= 0) return false;
    out.append(buf, static_cast<size_t>(got));
  }
  return true;
}

// RFB 3.8 up to the server's list of security types: "1" is None, "2" is VNC authentication.
Result<std::vector<int>> rfbSecurityTypes(int fd) {
  std::string version, count, types;
  if (!readExact(fd, version, 12) || !startsWith(version, "RFB ")) return internalError("no RFB greeting: " + version);
  VMM_TRY(writeAllFd(fd, "RFB 003.008\n", Deadline::after(Millis(5000))));
  if (!readExact(fd, count, 1) || count[0] == 0) return internalError("no security types");
  if (!readExact(fd, types, static_cast<unsigned char>(count[0]))) return internalError("short security type list");
  std::vector<int> out;
  for (char c : types) out.push_back(static_cast<unsigned char>(c));
  return out;
}

// VNC authentication's answer (RFB 3.8, 7.2.2): the 16-byte challenge DES-ECB encrypted with the
// password as key - 8 bytes, zero padded, each byte's bits in reverse order. Single DES is in
// OpenSSL's legacy provider, loaded into a library context of its own.
Result<std::string> vncAuthResponse(const std::string& challenge, const std::string& password) {
  static OSSL_LIB_CTX* ctx = [] {
    OSSL_LIB_CTX* c = OSSL_LIB_CTX_new();
    if (c && !OSSL_PROVIDER_load(c, "legacy")) c = nullptr;
    return c;
  }();
  if (!ctx || challenge.size() != 16) return internalError("no DES (OpenSSL's legacy provider) or a bad challenge");
  unsigned char key[8] = {};
  for (size_t i = 0; i < 8 && i < password.size(); ++i)
    for (int bit = 0; bit < 8; ++bit)
      if (static_cast<unsigned char>(password[i]) & (1u << bit)) key[i] |= static_cast<unsigned char>(0x80u >> bit);
  std::unique_ptr<EVP_CIPHER, decltype(&EVP_CIPHER_free)> des(EVP_CIPHER_fetch(ctx, "DES-ECB", nullptr), EVP_CIPHER_free);
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> cipher(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  unsigned char out[32];
  int n = 0, tail = 0;
  if (!des || !cipher || !EVP_EncryptInit_ex(cipher.get(), des.get(), nullptr, key, nullptr) || !EVP_CIPHER_CTX_set_padding(cipher.get(), 0) ||
      !EVP_EncryptUpdate(cipher.get(), out, &n, reinterpret_cast<const unsigned char*>(challenge.data()), 16) ||
      !EVP_EncryptFinal_ex(cipher.get(), out + n, &tail))
    return internalError("DES-ECB failed");
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n + tail));
}

// After rfbSecurityTypes offered 2: VNC authentication with `password`, then ClientInit; the
// display's "WIDTHxHEIGHT" from ServerInit, or the server's reason for refusing.
Result<std::string> vncLogin(int fd, const std::string& password) {
  Deadline dl = Deadline::after(Millis(5000));
  VMM_TRY(writeAllFd(fd, std::string(1, '\x02'), dl));
  std::string challenge, result;
  if (!readExact(fd, challenge, 16)) return internalError("no VNC challenge");
  VMM_ASSIGN(auto response, vncAuthResponse(challenge, password));
  VMM_TRY(writeAllFd(fd, response, dl));
  if (!readExact(fd, result, 4)) return internalError("no security result");
  if (result != std::string(4, '\0')) {
    std::string len, reason;
    if (readExact(fd, len, 4)) (void)readExact(fd, reason, std::min<size_t>(static_cast<unsigned char>(len[3]), 255));
    return Error{ErrorCode::permission_denied, "refused: " + reason};
  }
  VMM_TRY(writeAllFd(fd, std::string(1, '\x01'), dl));  // ClientInit: shared
  std::string init;
  if (!readExact(fd, init, 24)) return internalError("no ServerInit");
  auto u16 = [&](size_t at) { return (static_cast<unsigned char>(init[at]) << 8) | static_cast<unsigned char>(init[at + 1]); };
  return std::to_string(u16(0)) + "x" + std::to_string(u16(2));
}

void putLe32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t le32At(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<size_t>(i)]);
  return v;
}

// A SPICE client's link of the main channel (spice-protocol's SpiceLinkMess without any
// capability, so the ticket follows the server's reply directly): the password, NUL included,
// RSA-OAEP encrypted with the key in the reply. The server's link result: 0 is OK, 7 is
// permission denied.
Result<uint32_t> spiceLink(int fd, const std::string& password) {
  Deadline dl = Deadline::after(Millis(5000));
  std::string mess;
  putLe32(mess, 0);  // connection id: a new session
  mess.push_back(1);  // channel type: main
  mess.push_back(0);  // channel id
  putLe32(mess, 0);   // common capabilities
  putLe32(mess, 0);   // channel capabilities
  putLe32(mess, 18);  // where the (no) capabilities start
  std::string link;
  putLe32(link, 0x51444552);  // "REDQ"
  putLe32(link, 2);
  putLe32(link, 2);
  putLe32(link, static_cast<uint32_t>(mess.size()));
  VMM_TRY(writeAllFd(fd, link + mess, dl));
  std::string header, reply, result;
  if (!readExact(fd, header, 16) || le32At(header, 0) != 0x51444552) return internalError("no SPICE link reply");
  uint32_t size = le32At(header, 12);
  if (size < 4 + 162 || size > 4096 || !readExact(fd, reply, size)) return internalError("short SPICE link reply");
  if (uint32_t error = le32At(reply, 0); error != 0) return error;
  const auto* der = reinterpret_cast<const unsigned char*>(reply.data() + 4);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(d2i_PUBKEY(nullptr, &der, 162), EVP_PKEY_free);
  if (!key) return internalError("the link reply's public key does not parse");
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(key.get(), nullptr), EVP_PKEY_CTX_free);
  size_t outLen = 0;
  const auto* ticket = reinterpret_cast<const unsigned char*>(password.c_str());
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) <= 0 || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) <= 0 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &outLen, ticket, password.size() + 1) <= 0)
    return internalError("RSA-OAEP set-up failed");
  std::string encrypted(outLen, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(encrypted.data()), &outLen, ticket, password.size() + 1) <= 0)
    return internalError("RSA-OAEP failed");
  encrypted.resize(outLen);
  VMM_TRY(writeAllFd(fd, encrypted, dl));
  if (!readExact(fd, result, 4)) return internalError("no SPICE link result");
  return le32At(result, 0);
}

Result<fs::UniqueFd> connectTcp(int port) {
  fs::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return systemError("connect 127.0.0.1:" + std::to_string(port), errno);
  return fd;
}

// A TCP listener on the host's 127.0.0.1 that records what each accepted connection sends.
class LoopbackListener {
 public:
  LoopbackListener() {
    fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_.get(), 8) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      return;
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        fs::UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c.valid()) continue;
        std::string got;
        char buf[256];
        for (int i = 0; i < 30 && got.find('\n') == std::string::npos; ++i) {
          pollfd q{c.get(), POLLIN, 0};
          if (::poll(&q, 1, 100) <= 0) continue;
          ssize_t n = ::read(c.get(), buf, sizeof buf);
          if (n <= 0) break;
          got.append(buf, static_cast<size_t>(n));
        }
        MutexLock lock(mu_);
        received_.push_back(got);
      }
    });
  }
  ~LoopbackListener() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> received() {
    MutexLock lock(mu_);
    return received_;
  }

 private:
  fs::UniqueFd fd_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Mutex mu_;
  std::vector<std::string> received_ VMM_GUARDED_BY(mu_);
};

class QemuExposure : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "qemu"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }
  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log (tail) ----\n" << vmmd->logTail() << "\n";
    if (vmmd) vmmd->destroyAllDomains();
    rpc.reset();
    vmmd.reset();
  }

  json guest(const std::string& name, const std::string& extraCmdline = "") {
    std::string cmdline = "console=ttyS0 panic=-1 quiet tg.marker=MARKER-" + name;
    if (!extraCmdline.empty()) cmdline += " " + extraCmdline;
    return {{"name", name}, {"type", "qemu"}, {"vcpus", 1}, {"memory", "256MiB"},
            {"boot", {{"kernel", guestDir() + "/vmlinux"}, {"initrd", guestDir() + "/full.cpio"}, {"cmdline", cmdline}}}};
  }
  void defineAndStart(const json& def) {
    auto r = rpc->call("domain.create", {{"definition", def}, {"start", true}});
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  json info(const std::string& name) {
    auto r = rpc->call("domain.get", {{"name", name}});
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json::object();
  }
  void waitForAgent(const std::string& name) {
    auto up = vmmd->waitForAgent(name);
    ASSERT_TRUE(up.ok()) << up.error().message;
  }
  // The guest sends a line to 10.0.2.2:port (slirp's name for the host); its nc's exit code.
  VmctlResult sendToHost(const std::string& name, int port) {
    return vmmd->vmctl({"exec", name, "--", "sh", "-c",
                        "echo hello-from-" + name + " | nc -w 3 10.0.2.2 " + std::to_string(port) + "; echo rc=$?"});
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
};

TEST_F(QemuExposure, DefaultVncIsARootOnlyUnixSocketAndTcpHasAPasswordForAdminsOnly) {
  json sock = guest("vncsock");
  sock["graphics"] = {{{"type", "vnc"}}};
  json tcp = guest("vnctcp");
  tcp["graphics"] = {{{"type", "vnc"}, {"listen", "127.0.0.1"}}};
  defineAndStart(sock);
  defineAndStart(tcp);

  // The default: a socket, no TCP listener of QEMU's own.
  json si = info("vncsock");
  pid_t pid = si["runtime"].value("pid", -1);
  ASSERT_GT(pid, 0) << si.dump();
  ASSERT_TRUE(si["runtime"].contains("graphics")) << si.dump();
  json g = si["runtime"]["graphics"][0];
  EXPECT_EQ(g.value("listen", ""), "unix") << g.dump();
  EXPECT_FALSE(g.contains("port")) << g.dump();
  EXPECT_FALSE(si["runtime"].contains("vnc_port"));
  std::string path = g.value("socket", "");
  EXPECT_EQ(path, vmmd->dir() + "/run/qemu/vncsock/guest/vnc0.sock");
  EXPECT_EQ(si["definition"]["graphics"][0], json::parse(R"({"type":"vnc","listen":"unix"})"));
  EXPECT_TRUE(tcpListenersOf(pid).empty()) << "QEMU " << pid << " listens on TCP";
  struct stat st{}, dirSt{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  // QEMU's own (unprivileged: a uid of its own) in its 0700 working directory, itself in the
  // domain's runtime directory, 0700 root.
  uid_t qemuUid = si["runtime"].value("uid", uid_t{0});
  EXPECT_NE(qemuUid, 0u) << si.dump();
  EXPECT_EQ(st.st_uid, qemuUid);
  EXPECT_EQ(st.st_mode & 0002, 0u) << std::oct << st.st_mode;  // connecting needs write permission
  std::string guestDir = path.substr(0, path.rfind('/')), domainDir = guestDir.substr(0, guestDir.rfind('/'));
  ASSERT_EQ(::stat(guestDir.c_str(), &dirSt), 0);
  EXPECT_EQ(dirSt.st_mode & 0777, 0700u) << std::oct << dirSt.st_mode;
  EXPECT_EQ(dirSt.st_uid, qemuUid);
  ASSERT_EQ(::stat(domainDir.c_str(), &dirSt), 0);
  EXPECT_EQ(dirSt.st_mode & 0777, 0700u) << std::oct << dirSt.st_mode;
  EXPECT_EQ(dirSt.st_uid, 0u);
  // The test's state directory is 0700 (mkdtemp): open the way down to QEMU's directory, so
  // that only its own directory and socket stand in the way.
  for (const std::string& d : {vmmd->dir(), vmmd->dir() + "/run", vmmd->dir() + "/run/qemu", domainDir}) ASSERT_EQ(::chmod(d.c_str(), 0711), 0) << d;
  EXPECT_EQ(connectAsNobody(path), EACCES);
  auto conn = connectUnix(path, Deadline::after(Millis(5000)));
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto types = rfbSecurityTypes(conn->get());
  ASSERT_TRUE(types.ok()) << types.error().message;
  EXPECT_EQ(*types, std::vector<int>{1});  // None: the socket's permissions are the access control

  // An explicit TCP address: QEMU listens there, with VNC authentication and a generated password.
  json ti = info("vnctcp");
  pid_t tpid = ti["runtime"].value("pid", -1);
  EXPECT_EQ(tcpListenersOf(tpid).size(), 1u) << "the TCP check sees QEMU's listener";
  json tg = ti["runtime"]["graphics"][0];
  EXPECT_EQ(tg.value("listen", ""), "127.0.0.1") << tg.dump();
  int port = tg.value("port", 0);
  ASSERT_GE(port, 5900) << tg.dump();
  EXPECT_EQ(ti["runtime"].value("vnc_port", 0), port);
  std::string password = tg.value("password", "");
  ASSERT_EQ(password.size(), 8u) << tg.dump();
  EXPECT_EQ(ti["definition"]["graphics"][0].value("password", ""), "********");
  EXPECT_EQ(vmmd->log().find(password), std::string::npos) << "the password is in vmmd's log";
  EXPECT_EQ(fs::readFile("/proc/" + std::to_string(tpid) + "/cmdline").valueOr("").find(password), std::string::npos);
  auto tconn = connectTcp(port);
  ASSERT_TRUE(tconn.ok()) << tconn.error().message;
  auto ttypes = rfbSecurityTypes(tconn->get());
  ASSERT_TRUE(ttypes.ok()) << ttypes.error().message;
  EXPECT_EQ(*ttypes, std::vector<int>{2});  // VNC authentication
  // A client logs in with the password and gets the display; with another one it is refused.
  auto display = vncLogin(tconn->get(), password);
  ASSERT_TRUE(display.ok()) << display.error().message;
  EXPECT_NE(*display, "0x0");
  auto wrong = connectTcp(port);
  ASSERT_TRUE(wrong.ok()) << wrong.error().message;
  ASSERT_TRUE(rfbSecurityTypes(wrong->get()).ok());
  std::string guess = password;
  guess[0] = guess[0] == 'a' ? 'b' : 'a';
  auto refused = vncLogin(wrong->get(), guess);
  ASSERT_FALSE(refused.ok()) << "logged in with a wrong password: " << *refused;
  EXPECT_EQ(refused.error().code, ErrorCode::permission_denied) << refused.error().message;

  // A read-only caller sees where it listens, not the password.
  client::ConnectOptions o;
  o.uri = "unix://" + vmmd->roSocketPath();
  auto ro = client::connect(o);
  ASSERT_TRUE(ro.ok()) << ro.error().message;
  auto roInfo = (*ro)->call("domain.get", {{"name", "vnctcp"}});
  ASSERT_TRUE(roInfo.ok()) << roInfo.error().message;
  EXPECT_EQ((*roInfo)["runtime"]["graphics"][0].value("port", 0), port);
  EXPECT_FALSE((*roInfo)["runtime"]["graphics"][0].contains("password")) << roInfo->dump();
  EXPECT_EQ(roInfo->dump().find(password), std::string::npos);
  ro->reset();

  // A vmmd that reconnects to the running guests reports the same.
  rpc.reset();
  vmmd->kill9();
  ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
  auto again = vmmd->connect();
  ASSERT_TRUE(again.ok()) << again.error().message;
  rpc = std::move(*again);
  EXPECT_EQ(info("vncsock")["runtime"]["graphics"], si["runtime"]["graphics"]);
  EXPECT_EQ(info("vnctcp")["runtime"]["graphics"], ti["runtime"]["graphics"]);
}

TEST_F(QemuExposure, SpiceOnTcpLinksOnlyWithItsPassword) {
  json def = guest("spicetcp");
  def["graphics"] = {{{"type", "spice"}, {"listen", "127.0.0.1"}, {"port", 5930}}};
  defineAndStart(def);
  json g = info("spicetcp")["runtime"]["graphics"][0];
  EXPECT_EQ(g.value("port", 0), 5930) << g.dump();
  std::string password = g.value("password", "");
  ASSERT_EQ(password.size(), 16u) << g.dump();  // generated; VNC's are 8 (its limit)
  auto link = [&](const std::string& ticket) -> Result<uint32_t> {
    VMM_ASSIGN(auto fd, connectTcp(5930));
    return spiceLink(fd.get(), ticket);
  };
  auto ok = link(password);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(*ok, 0u) << "SPICE link error " << *ok;
  for (const std::string& wrong : {std::string(), password.substr(0, 7), password + "x"}) {
    auto refused = link(wrong);
    ASSERT_TRUE(refused.ok()) << refused.error().message;
    EXPECT_EQ(*refused, 7u) << "ticket " << quote(wrong);  // SPICE_LINK_ERR_PERMISSION_DENIED
  }
}

TEST_F(QemuExposure, UserModeNicReachesTheHostLoopbackOnlyWithHostLoopback) {
  LoopbackListener listener;
  ASSERT_GT(listener.port(), 0);
  json closed = guest("closed", "tg.ip=10.0.2.15/24");
  closed["nics"] = {{{"type", "user"}}};
  json open = guest("open", "tg.ip=10.0.2.15/24");
  open["nics"] = {{{"type", "user"}, {"host_loopback", true}}};
  json hot = guest("hot");
  for (const auto& d : {closed, open, hot}) defineAndStart(d);
  for (const char* name : {"closed", "open", "hot"}) waitForAgent(name);

  auto r = sendToHost("open", listener.port());
  EXPECT_NE(r.out.find("rc=0"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(waitFor([&] { return listener.received().size() == 1; }, Millis(5000)));

  r = sendToHost("closed", listener.port());
  EXPECT_EQ(r.out.find("rc=0"), std::string::npos) << r.out << r.err;

  // A user NIC plugged into the running guest is restricted the same way.
  auto plugged = rpc->call("domain.attach_nic", {{"name", "hot"}, {"nic", {{"type", "user"}, {"mac", "52:54:00:00:e7:01"}}}, {"live", true}});
  ASSERT_TRUE(plugged.ok()) << plugged.error().message;
  VmctlResult up;
  ASSERT_TRUE(waitFor([&] {
    up = vmmd->vmctl({"exec", "hot", "--", "sh", "-c", "ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0"});
    return up.exitCode == 0;
  }, Millis(15000), Millis(300))) << up.out << up.err;
  r = sendToHost("hot", listener.port());
  EXPECT_EQ(r.out.find("rc=0"), std::string::npos) << r.out << r.err;

  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto got = listener.received();
  ASSERT_EQ(got.size(), 1u) << "connections that reached the host's loopback: " << got.size();
  EXPECT_EQ(got[0], "hello-from-open\n");
}

}  // namespace

int main(int argc, char** argv) {
  return vmm::testutil::runTestsInPrivateNetworkNamespace(argc, argv, "network and mount namespaces, QEMU guests");
}
