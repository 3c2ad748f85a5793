// Hostile rootfs tarballs for `volume.create --format dir --from-tar` against a real vmmd (the
// security review's test plan item 19, findings H6 and L6): members that escape the volume by
// name, through a symbolic link or as a hard link; device nodes, fifos and setuid/setgid bits;
// a name with a newline; a header that disagrees with the data that follows; decompression
// bombs (bytes and inodes). Every archive is built here byte by byte (ustar headers, zstd frames
// of RLE blocks), so "50 GB of zeros" costs 1.6 MB. After each case: refused with the exact
// reason or unpacked neutralised, nothing written outside the volume, nothing left in the pool,
// vmmd answering host.info within one second. Needs root (vmmd unpacks as root).
#include <fcntl.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/random.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"
#include "tests/support/require.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

constexpr uint64_t MiB = 1 << 20;

// ---- archives, byte by byte

struct Member {
  // A constructor rather than an aggregate: most members give only the first few fields.
  Member(std::string name, char type = '0', std::string data = "", unsigned mode = 0644, std::string link = "",
         unsigned major = 0, unsigned minor = 0, std::optional<uint64_t> declaredSize = std::nullopt)
      : name(std::move(name)), type(type), data(std::move(data)), mode(mode), link(std::move(link)), major(major),
        minor(minor), declaredSize(declaredSize) {}
  std::string name;
  char type;
  std::string data;
  unsigned mode;
  std::string link;
  unsigned major, minor;
  std::optional<uint64_t> declaredSize;  // the header's size when it differs from data.size()
};

// width - 1 zero-padded octal digits and a NUL (the low digits of a value too large to fit).
void putOctal(char* field, size_t width, uint64_t v) {
  for (size_t i = width - 1; i-- > 0; v >>= 3) field[i] = static_cast<char>('0' + (v & 7));
  field[width - 1] = '\0';
}

// A ustar header (sizes past 8 GiB in GNU base-256, as GNU tar writes them).
std::string header(const Member& m) {
  std::string h(512, '\0');
  std::memcpy(h.data(), m.name.data(), std::min<size_t>(m.name.size(), 100));
  putOctal(&h[100], 8, m.mode);
  putOctal(&h[108], 8, 0);
  putOctal(&h[116], 8, 0);
  uint64_t size = m.declaredSize.value_or(m.data.size());
  if (size < (1ull << 33)) {
    putOctal(&h[124], 12, size);
  } else {
    h[124] = static_cast<char>(0x80);
    for (int i = 0; i < 8; ++i) h[135 - i] = static_cast<char>((size >> (8 * i)) & 0xff);
  }
  putOctal(&h[136], 12, 1700000000);
  h[156] = m.type;
  std::memcpy(&h[157], m.link.data(), std::min<size_t>(m.link.size(), 100));
  std::memcpy(&h[257], "ustar", 6);
  std::memcpy(&h[263], "00", 2);
  std::memcpy(&h[265], "root", 4);
  std::memcpy(&h[297], "root", 4);
  putOctal(&h[329], 8, m.major);
  putOctal(&h[337], 8, m.minor);
  std::memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(&h[148], 8, "%06o", sum);
  h[155] = ' ';
  return h;
}

std::string padded(std::string s) {
  s.resize((s.size() + 511) / 512 * 512, '\0');
  return s;
}

std::string tarOf(const std::vector<Member>& members) {
  std::string out;
  for (const auto& m : members) out += header(m) + padded(m.data);
  return out + std::string(1024, '\0');
}

// A zstd frame written by hand: raw blocks for the given bytes and RLE blocks (4 bytes for
// 128 KiB) for runs of zeros, so that a stream of many GB costs a few MB on disk and no time.
class ZstdWriter {
 public:
  ZstdWriter() {
    out_ = std::string("\x28\xb5\x2f\xfd", 4);
    out_ += '\0';                           // frame header: no content size, a window descriptor
    out_ += static_cast<char>(7 << 3);      // window 2^17 = the largest block
  }
  void raw(std::string_view bytes) {
    for (size_t off = 0; off < bytes.size(); off += kBlock) {
      auto piece = bytes.substr(off, kBlock);
      block(piece.size(), 0);
      out_.append(piece);
    }
  }
  void zeros(uint64_t n) {
    while (n) {
      uint64_t piece = std::min<uint64_t>(n, kBlock);
      block(piece, 1);
      out_ += '\0';
      n -= piece;
    }
  }
  std::string finish() {
    block(0, 0, true);  // an empty last raw block
    return out_;
  }

 private:
  static constexpr size_t kBlock = 128 * 1024;
  void block(uint64_t size, unsigned type, bool last = false) {
    uint32_t h = static_cast<uint32_t>(size << 3 | type << 1 | (last ? 1 : 0));
    out_ += static_cast<char>(h & 0xff);
    out_ += static_cast<char>((h >> 8) & 0xff);
    out_ += static_cast<char>((h >> 16) & 0xff);
  }
  std::string out_;
};

uint64_t fileSize(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// Bytes allocated under `dir` (what a bomb has written so far).
uint64_t g_usage;
uint64_t diskUsage(const std::string& dir) {
  g_usage = 0;
  ::nftw(dir.c_str(), [](const char*, const struct stat* st, int, FTW*) {
    g_usage += static_cast<uint64_t>(st->st_blocks) * 512;
    return 0;
  }, 64, FTW_PHYS);
  return g_usage;
}

class HostileTar : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string root = testutil::missingRoot("vmmd unpacks rootfs tarballs as root");
    VMM_REQUIRE(root.empty(), root);
    std::string zstd = testutil::missingTools({"zstd"}, "zstd");
    VMM_REQUIRE(zstd.empty(), zstd);
    tag = "vmm-tar-" + hexEncode(randomString(4).data(), 4);
  }
  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log (tail) ----\n" << tail(vmmd->log()) << "\n";
    rpc.reset();
    for (const auto& p : outside) (void)runCommand({"rm", "-rf", p});
  }
  static std::string randomString(size_t n) {
    std::string s(n, '\0');
    randomBytes(s.data(), n);
    return s;
  }
  static std::string tail(const std::string& s) { return s.size() > 8000 ? s.substr(s.size() - 8000) : s; }

  // vmmd with these lines in its configuration file.
  void startVmmd(const std::string& config = "") {
    vmmd = std::make_unique<VmmdProcess>();
    if (!config.empty()) {
      // The first object keeps owning (and at the end removes) the directory it made.
      dirOwner = std::move(vmmd);
      ASSERT_TRUE(fs::writeFileAtomic(dirOwner->dir() + "/vmmd.toml", config).ok());
      vmmd = std::make_unique<VmmdProcess>(dirOwner->dir(), std::vector<std::string>{"--config", dirOwner->dir() + "/vmmd.toml"});
    }
    auto st = vmmd->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }

  std::string write(const std::string& name, const std::string& bytes) {
    std::string path = vmmd->dir() + "/" + name;
    EXPECT_TRUE(fs::writeFileAtomic(path, bytes).ok());
    return path;
  }
  Result<json> createFrom(const std::string& volume, const std::string& tarball) {
    return rpc->call("volume.create", {{"pool", "default"}, {"volume", {{"name", volume}, {"format", "dir"}, {"from_tar", tarball}}}},
                     Millis(120000));
  }
  std::string pool() const { return vmmd->dir() + "/state/pools/default"; }

  // Refused with `why` in the message; nothing in the pool, no volume, vmmd alive.
  void expectRefused(const std::string& tarball, const std::string& why) {
    auto r = createFrom("v", tarball);
    ASSERT_FALSE(r.ok()) << tarball << " was unpacked: " << r->dump();
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << r.error().message;
    EXPECT_NE(r.error().message.find(why), std::string::npos) << "expected \"" << why << "\" in: " << r.error().message;
    expectPoolEmpty();
    expectAlive();
  }
  void expectPoolEmpty() {
    EXPECT_EQ(fs::listDir(pool()).valueOr({"?"}), std::vector<std::string>{}) << "left in the pool directory";
    auto list = rpc->call("volume.list", {{"pool", "default"}});
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty()) << list->dump();
  }
  void expectAlive() {
    auto t0 = SteadyClock::now();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok());
    auto info = (*c)->call("host.info", json::object(), Millis(1000));
    EXPECT_TRUE(info.ok()) << (info.ok() ? "" : info.error().message);
    EXPECT_LT(std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count(), 1000);
  }
  // A host path the archive tries to reach: it must not exist afterwards.
  std::string hostPath(const std::string& dir) {
    std::string p = dir + "/" + tag;
    outside.push_back(p);
    return p;
  }

  std::unique_ptr<VmmdProcess> dirOwner;  // destroyed after vmmd
  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::string tag;
  std::vector<std::string> outside;
};

}  // namespace

TEST_F(HostileTar, NamesOutsideTheVolumeAreRefused) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  // ../x from the unpack directory is the pool itself; ../../x the state directory.
  expectRefused(write("dotdot.tar", tarOf({{"ok", '0', "x"}, {"../" + tag, '0', "escaped"}})), "would be written outside the volume");
  expectRefused(write("dotdot2.tar", tarOf({{"a/../../../" + tag, '0', "escaped"}})), "would be written outside the volume");
  EXPECT_FALSE(fs::exists(pool() + "/../" + tag));
  std::string etc = hostPath("/etc");
  expectRefused(write("abs.tar", tarOf({{etc, '0', "escaped"}})), "has an absolute path");
  EXPECT_FALSE(fs::exists(etc));
}

TEST_F(HostileTar, NothingIsWrittenThroughASymbolicLink) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  std::string etc = hostPath("/etc"), tmp = hostPath("/tmp");
  // a -> / then a/etc/TAG: GNU tar would refuse to follow only a link it made itself.
  expectRefused(write("symlink.tar", tarOf({{"a", '2', "", 0777, "/"}, {"a" + etc, '0', "escaped"}})),
                "goes through the symbolic link \"a\"");
  // A relative link that climbs out, a directory entry through it, and a link inside a directory.
  expectRefused(write("rel.tar", tarOf({{"d/up", '2', "", 0777, "../../../../../../../../.."}, {"d/up/tmp/", '5'},
                                        {"./d/up" + tmp, '0', "escaped"}})),
                "goes through the symbolic link \"d/up\"");
  // A member with the same name as a link: written through the link by a tar that opens
  // existing files.
  expectRefused(write("replace.tar", tarOf({{"passwd", '2', "", 0777, etc}, {"passwd", '0', "escaped"}})),
                "replaces the symbolic link \"passwd\"");
  EXPECT_FALSE(fs::exists(etc));
  EXPECT_FALSE(fs::exists(tmp));
}

TEST_F(HostileTar, HardLinksOutsideTheVolumeAreRefused) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  struct stat before{};
  ASSERT_EQ(::stat("/etc/shadow", &before), 0);
  expectRefused(write("hard.tar", tarOf({{"shadow", '1', "", 0644, "/etc/shadow"}})), "hard link \"shadow\" has an absolute target");
  expectRefused(write("hard2.tar", tarOf({{"shadow", '1', "", 0644, "../../../../../../etc/shadow"}})),
                "hard link \"shadow\" points outside the volume");
  expectRefused(write("hard3.tar", tarOf({{"a", '2', "", 0777, "/"}, {"shadow", '1', "", 0644, "a/etc/shadow"}})),
                "goes through the symbolic link \"a\"");
  struct stat after{};
  ASSERT_EQ(::stat("/etc/shadow", &after), 0);
  EXPECT_EQ(after.st_nlink, before.st_nlink) << "a hard link to /etc/shadow was made";
}

TEST_F(HostileTar, DevicesFifosAndSetuidBitsAreNeutralised) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  std::string tar = tarOf({{"./", '5', "", 0777},
                           {"bin/", '5', "", 0755},
                           {"bin/x", '0', "#!/bin/sh\n", 04755},
                           {"bin/y", '0', "#!/bin/sh\n", 02755},
                           {"bin/z", '0', "#!/bin/sh\n", 06777},
                           {"bin/link-to-x", '1', "", 04755, "bin/x"},
                           {"dev/", '5', "", 0755},
                           {"dev/sda", '4', "", 0666, "", 8, 0},
                           {"dev/mem", '3', "", 0666, "", 1, 1},
                           {"run/initctl", '6', "", 0600},
                           {"etc/motd", '0', "hello\n", 0644},
                           {"tmp/", '5', "", 01777},
                           {"srv/", '5', "", 02775}});
  auto r = createFrom("neutral", write("devices.tar", tar));
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::string v = pool() + "/neutral";
  struct stat st{};
  ASSERT_EQ(::lstat(v.c_str(), &st), 0);
  // The tree's top is a container's "/" (0755); the pool's directory keeps host users out.
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "the volume's root directory";
  EXPECT_EQ(st.st_uid, 0u);
  ASSERT_EQ(::lstat(pool().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u) << "the pool's directory";
  for (const char* gone : {"/dev/sda", "/dev/mem", "/run/initctl"})
    EXPECT_NE(::lstat((v + gone).c_str(), &st), 0) << gone << " was created, mode " << std::oct << st.st_mode;
  for (const char* file : {"/bin/x", "/bin/y", "/bin/z", "/bin/link-to-x"}) {
    ASSERT_EQ(::lstat((v + file).c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 07000, 0u) << file << " kept mode " << std::oct << (st.st_mode & 07777);
    EXPECT_TRUE(S_ISREG(st.st_mode)) << file;
  }
  ASSERT_EQ(::lstat((v + "/bin/z").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777u);  // only the set-id bits go
  ASSERT_EQ(::lstat((v + "/tmp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);  // a sticky /tmp stays one
  EXPECT_EQ(fs::readFile(v + "/etc/motd").valueOr(""), "hello\n");
  expectAlive();
}

TEST_F(HostileTar, ControlCharactersInNamesAreRefused) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  expectRefused(write("newline.tar", tarOf({{"etc/ok", '0', "x"}, {"etc/bad\nname", '0', "x"}})),
                "member \"etc/bad\\x0aname\" has a control character in its name");
  expectRefused(write("newline-link.tar", tarOf({{"l", '2', "", 0777, "x\ny"}})), "control character");
}

// A symlink header that claims data: a parser that skips it would take the "data" for the next
// header, one that does not would unpack a member nobody checked.
TEST_F(HostileTar, HeadersThatDisagreeWithTheirDataAreRefused) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  std::string smuggled = header({"../" + tag, '0', "escaped"}) + padded("escaped");
  Member link{"l", '2', smuggled, 0777, "target"};
  expectRefused(write("smuggle.tar", tarOf({link})), "symbolic link \"l\" carries data");
  EXPECT_FALSE(fs::exists(pool() + "/../" + tag));
  std::string badSum = tarOf({{"f", '0', "x"}});
  badSum[148] = '7';
  expectRefused(write("badsum.tar", badSum), "checksum");
  std::string cut = tarOf({{"f", '0', std::string(4096, 'x')}}).substr(0, 1536);
  expectRefused(write("cut.tar", cut), "ends in the middle");
  expectRefused(write("sparse.tar", tarOf({{"s", 'S', ""}})), "type 'S'");
}

// Bytes: one member that says it holds 50 GB (refused at its header) and 4 GiB of 1 MiB members
// (refused at the cap while unpacking); inodes: 5000 empty files. A watcher kills vmmd if the
// pool ever holds much more than the cap, so the old unlimited behaviour fails fast instead of
// filling the disk.
TEST_F(HostileTar, DecompressionBombsStopAtTheCaps) {
  ASSERT_NO_FATAL_FAILURE(startVmmd("[storage]\nunpack_max_bytes = \"64MiB\"\nunpack_max_files = 2000\n"));
  struct Watcher {
    std::atomic<bool> done{false};
    std::atomic<uint64_t> peak{0};
    std::thread thread;
    Watcher(pid_t pid, std::string dir) {
      thread = std::thread([this, pid, dir] {
        while (!done) {
          uint64_t u = diskUsage(dir);
          if (u > peak) peak = u;
          if (u > 96 * MiB) ::kill(pid, SIGKILL);
          std::this_thread::sleep_for(Millis(20));
        }
      });
    }
    ~Watcher() { stop(); }
    void stop() {
      done = true;
      if (thread.joinable()) thread.join();
    }
  } watch(vmmd->pid(), pool());

  ZstdWriter one;
  one.raw(header({"zeros", '0', "", 0644, "", 0, 0, 50ull << 30}));
  one.zeros(50ull << 30);
  one.zeros(1024);
  std::string bomb = write("bomb.tar.zst", one.finish());
  EXPECT_LT(fileSize(bomb), 2 * MiB);
  auto t0 = SteadyClock::now();
  expectRefused(bomb, "unpack_max_bytes");
  EXPECT_LT(std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count(), 10000);

  ZstdWriter many;
  for (int i = 0; i < 4096; ++i) {
    many.raw(header({"f" + std::to_string(i), '0', "", 0644, "", 0, 0, MiB}));
    many.zeros(MiB);
  }
  many.zeros(1024);
  expectRefused(write("many.tar.zst", many.finish()), "unpack_max_bytes");

  std::vector<Member> files;
  for (int i = 0; i < 5000; ++i) files.push_back({"d/" + std::to_string(i), '0', ""});
  expectRefused(write("inodes.tar", tarOf(files)), "unpack_max_files");
  watch.stop();
  EXPECT_LT(watch.peak.load(), 96 * MiB) << "the pool held " << watch.peak.load() / MiB << " MiB";
  std::cerr << "[bombs] peak pool usage " << watch.peak.load() / MiB << " MiB\n";

  // Under the caps the same kind of archive unpacks.
  ZstdWriter fine;
  fine.raw(header({"zeros", '0', "", 0644, "", 0, 0, 8 * MiB}));
  fine.zeros(8 * MiB);
  fine.zeros(1024);
  auto ok = createFrom("fine", write("fine.tar.zst", fine.finish()));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(fileSize(pool() + "/fine/zeros"), 8 * MiB);
}
