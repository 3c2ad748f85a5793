// The dir pool backend against real files and the real qemu-img.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/fs.h"
#include "base/process.h"
#include "storage/dir/dir_backend.h"
#include "storage/dir/dir_volume.h"
#include "storage/image_inspect.h"
#include "storage/qemu_img.h"
#include "tests/support/require.h"

using namespace vmm;
using namespace vmm::storage;

namespace {

std::string firstBytes(const std::string& path, size_t n) {
  auto all = fs::readFile(path);
  return all.ok() ? all->substr(0, n) : std::string();
}

class DirPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vmm-dirpool-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root = tmpl;
    model::Pool p;
    p.name = "default";
    p.type = model::PoolType::dir;
    p.path = root + "/pool";
    backend = std::make_unique<DirBackend>(p);
    ASSERT_TRUE(backend->build(dl()).ok());
    ASSERT_TRUE(backend->start(dl()).ok());
  }
  void TearDown() override { (void)runCommand({"rm", "-rf", root}); }
  static Deadline dl() { return Deadline::after(Millis(30000)); }
  model::VolumeSpec spec(const std::string& name, uint64_t size, model::DiskFormat f = model::DiskFormat::qcow2) {
    model::VolumeSpec s;
    s.name = name;
    s.capacity = size;
    s.format = f;
    return s;
  }
  // A volume as the backend describes it (the pool service would put its record over it).
  model::Volume vol(const std::string& name) {
    auto v = backend->volumeInfo(name, dl());
    EXPECT_TRUE(v.ok()) << name;
    return v.ok() ? *v : model::Volume{};
  }
  std::vector<std::string> names() {
    std::vector<std::string> out;
    for (const auto& v : backend->listVolumes(dl()).valueOr({})) out.push_back(v.name);
    return out;
  }

  std::string root;
  std::unique_ptr<DirBackend> backend;
};

// A dir pool defined over a directory open to others (an admin's /srv/images, or /etc) changes
// no mode of the files in it: they are not vmmd's.
TEST(DirPoolOverAHostDirectory, StartingItChangesNoFileModes) {
  char tmpl[] = "/tmp/vmm-hostdir-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  ASSERT_TRUE(fs::writeFileAtomic(dir + "/passwd", "root:x:0:0::/root:/bin/sh\n", 0644).ok());
  ASSERT_TRUE(fs::writeFileAtomic(dir + "/ifup", "#!/bin/sh\n", 0755).ok());
  model::Pool p;
  p.name = "hostdir";
  p.type = model::PoolType::dir;
  p.path = dir;
  DirBackend backend(p);
  ASSERT_TRUE(backend.start(Deadline::after(Millis(30000))).ok());
  struct stat st{};
  ASSERT_EQ(::stat((dir + "/passwd").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  ASSERT_EQ(::stat((dir + "/ifup").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  (void)runCommand({"rm", "-rf", dir});
}

TEST_F(DirPoolTest, CreateListInfoResizeDelete) {
  auto q = backend->createVolume(spec("a.qcow2", 1ULL << 30), nullptr, dl());
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_EQ(q->format, model::DiskFormat::qcow2);
  EXPECT_EQ(q->capacity, 1ULL << 30);
  EXPECT_LT(q->allocation, 1ULL << 20);  // sparse
  auto r = backend->createVolume(spec("b.raw", 64 << 20, model::DiskFormat::raw), nullptr, dl());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->format, model::DiskFormat::raw);
  EXPECT_EQ(names(), (std::vector<std::string>{"a.qcow2", "b.raw"}));
  // Header-derived metadata agrees with qemu-img.
  auto info = imageInfo(q->path, dl());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->virtualSize, q->capacity);

  ASSERT_TRUE(backend->resizeVolume(vol("a.qcow2"), 2ULL << 30, false, dl()).ok());
  EXPECT_EQ(backend->volumeInfo("a.qcow2", dl())->capacity, 2ULL << 30);
  auto shrink = backend->resizeVolume(vol("a.qcow2"), 1ULL << 20, false, dl());
  ASSERT_FALSE(shrink.ok());
  EXPECT_NE(shrink.error().message.find("shrinking"), std::string::npos);
  EXPECT_EQ(backend->volumeInfo("a.qcow2", dl())->capacity, 2ULL << 30);

  ASSERT_TRUE(backend->deleteVolume("a.qcow2", dl()).ok());
  EXPECT_EQ(backend->volumeInfo("a.qcow2", dl()).error().code, ErrorCode::not_found);
  EXPECT_EQ(names(), (std::vector<std::string>{"b.raw"}));
  auto cap = backend->capacity(dl());
  ASSERT_TRUE(cap.ok());
  EXPECT_GT(cap->capacity, 0u);
  EXPECT_GE(cap->capacity, cap->available);
}

TEST_F(DirPoolTest, LinkedCloneOfTenGiBIsFastAndFullCopyIsIndependent) {
  ASSERT_TRUE(backend->createVolume(spec("base.qcow2", 10ULL << 30), nullptr, dl()).ok());
  auto t0 = SteadyClock::now();
  CloneOptions linked;
  auto clone = backend->cloneVolume(vol("base.qcow2"), "vm1.qcow2", linked, dl());
  auto took = SteadyClock::now() - t0;
  ASSERT_TRUE(clone.ok()) << clone.error().message;
  EXPECT_LT(took, Millis(1000));
  EXPECT_EQ(clone->backingVolume, "base.qcow2");
  EXPECT_EQ(clone->capacity, 10ULL << 30);
  auto info = imageInfo(clone->path, dl());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->backingFile, root + "/pool/base.qcow2");

  ASSERT_TRUE(backend->createVolume(spec("small.raw", 8 << 20, model::DiskFormat::raw), nullptr, dl()).ok());
  ASSERT_EQ(std::system(("printf hello | dd of=" + root + "/pool/small.raw conv=notrunc status=none").c_str()), 0);
  CloneOptions full;
  full.linked = false;
  std::vector<double> progress;
  full.progress = [&](double f) { progress.push_back(f); };
  auto copy = backend->cloneVolume(vol("small.raw"), "copy.raw", full, dl());
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  EXPECT_TRUE(copy->backingVolume.empty());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), 1.0);
  EXPECT_EQ(firstBytes(copy->path, 5), "hello");

  // Wiping keeps format, size and (for a linked clone) the base.
  ASSERT_TRUE(backend->wipeVolume(vol("copy.raw"), nullptr, dl()).ok());
  EXPECT_NE(firstBytes(copy->path, 5), "hello");
  model::Volume base = vol("base.qcow2");
  ASSERT_TRUE(backend->wipeVolume(vol("vm1.qcow2"), &base, dl()).ok());
  EXPECT_EQ(backend->volumeInfo("vm1.qcow2", dl())->backingVolume, "base.qcow2");
}

TEST_F(DirPoolTest, BadInputIsRefusedAndCreatesNothing) {
  for (const std::string& bad : std::vector<std::string>{"../escape", "a/b", ".hidden", "", std::string(256, 'x'), "tab\there"}) {
    auto r = backend->createVolume(spec(bad, 1 << 20), nullptr, dl());
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << bad;
  }
  auto zero = backend->createVolume(spec("zero.qcow2", 0), nullptr, dl());
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.error().message.find("greater than 0"), std::string::npos);
  auto huge = spec("huge.raw", 1ULL << 60, model::DiskFormat::raw);
  huge.preallocate = true;
  auto h = backend->createVolume(huge, nullptr, dl());
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("free space"), std::string::npos) << h.error().message;
  ASSERT_TRUE(backend->createVolume(spec("dup.qcow2", 1 << 20), nullptr, dl()).ok());
  EXPECT_EQ(backend->createVolume(spec("dup.qcow2", 1 << 20), nullptr, dl()).error().code, ErrorCode::conflict);
  // A symlink planted in the pool is not a volume and cannot be used to reach outside it.
  ASSERT_EQ(::symlink("/etc/passwd", (root + "/pool/link").c_str()), 0);
  EXPECT_EQ(backend->volumeInfo("link", dl()).error().code, ErrorCode::not_found);
  EXPECT_FALSE(backend->deleteVolume("link", dl()).ok());
  EXPECT_TRUE(fs::exists("/etc/passwd"));
  EXPECT_EQ(names(), (std::vector<std::string>{"dup.qcow2"}));
  EXPECT_EQ(backend->destroyStorage(dl()).error().code, ErrorCode::conflict);
}

}  // namespace

// ---- directory volumes (format "dir": container root filesystems)

namespace {

class DirVolumeTest : public DirPoolTest {
 protected:
  // A small tree made into a tarball with `tarFlags` (e.g. "-z"): the rootfs of the tests.
  std::string makeTarball(const std::string& name, const std::string& tarFlags) {
    std::string src = root + "/src-" + name, tar = root + "/" + name;
    EXPECT_EQ(std::system(("set -e; mkdir -p " + src + "/bin " + src + "/etc; printf hello > " + src + "/etc/motd; " +
                           "head -c 100000 /dev/urandom > " + src + "/bin/blob; ln -s /bin/blob " + src + "/bin/link; " +
                           "tar " + tarFlags + " -cf " + tar + " -C " + src + " .")
                              .c_str()),
              0);
    return tar;
  }
  model::VolumeSpec dirSpec(const std::string& name, const std::string& tar = "") {
    model::VolumeSpec s;
    s.name = name;
    s.directory = true;
    s.fromTar = tar;
    return s;
  }
};

TEST(DirVolumeModel, FormatDirParsesAndPrints) {
  auto s = model::parseVolumeSpec({{"name", "rootfs"}, {"format", "dir"}, {"from_tar", "/tmp/x.tar.gz"}});
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_TRUE(s->directory);
  EXPECT_EQ(s->fromTar, "/tmp/x.tar.gz");
  EXPECT_FALSE(model::parseVolumeSpec({{"name", "r"}, {"format", "dir"}, {"capacity", "1G"}}).ok());
  EXPECT_FALSE(model::parseVolumeSpec({{"name", "r"}, {"format", "dir"}, {"from_tar", "relative.tar"}}).ok());
  auto notDir = model::parseVolumeSpec({{"name", "r"}, {"format", "raw"}, {"capacity", "1G"}, {"from_tar", "/x.tar"}});
  ASSERT_FALSE(notDir.ok());
  EXPECT_NE(notDir.error().message.find("dir"), std::string::npos);
  model::Volume v;
  v.directory = true;
  EXPECT_EQ(model::formatVolume(v)["format"], "dir");
}

TEST(DirVolumeHelpers, CompressionIsDetectedByMagicBytes) {
  EXPECT_EQ(tarCompressionFlag("\x1f\x8b\x08").valueOr("?"), "--gzip");
  EXPECT_EQ(tarCompressionFlag(std::string("\xfd" "7zXZ\0\0", 7)).valueOr("?"), "--xz");
  EXPECT_EQ(tarCompressionFlag("BZh91AY").valueOr("?"), "--bzip2");
  EXPECT_EQ(tarCompressionFlag("\x28\xb5\x2f\xfd\x00").valueOr("?"), "--zstd");
  std::string plain(512, '\0');
  plain.replace(257, 5, "ustar");
  EXPECT_EQ(tarCompressionFlag(plain).valueOr("?"), "");
  auto bad = tarCompressionFlag("PK\x03\x04 a zip file");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("gzip, xz"), std::string::npos) << bad.error().message;
}

TEST(DirVolumeHelpers, EscapingMemberNamesAreRefused) {
  EXPECT_TRUE(checkTarMemberName("./bin/sh").ok());
  EXPECT_TRUE(checkTarMemberName("etc/..hidden").ok());
  EXPECT_FALSE(checkTarMemberName("/etc/passwd").ok());
  EXPECT_FALSE(checkTarMemberName("../etc/passwd").ok());
  EXPECT_FALSE(checkTarMemberName("./a/../../b").ok());
}

// GNU tar's own ways of writing names longer than 100 bytes (ustar prefix, GNU 'L'/'K' headers,
// pax path/linkpath) reach the member checks: long names unpack, long escaping ones are refused.
TEST_F(DirVolumeTest, LongNamesInEveryTarFormatAreChecked) {
  std::string longDir(90, 'd'), longFile(90, 'f');
  for (const char* format : {"ustar", "gnu", "pax"}) {
    std::string src = root + "/long-" + format, tar = root + "/long-" + format + ".tar";
    bool ustar = std::string(format) == "ustar";  // no link targets over 100 bytes, no 100-byte last component
    std::string links = ustar ? "" : "; ln -s " + longDir + "/" + longFile + " " + src + "/l; ln " + src + "/" + longDir + "/" + longFile + " " + src + "/h";
    ASSERT_EQ(std::system(("set -e; mkdir -p " + src + "/" + longDir + "; echo x > " + src + "/" + longDir + "/" + longFile + links +
                           "; tar --format=" + format + " -cf " + tar + " -C " + src + " .")
                              .c_str()),
              0);
    auto v = backend->createVolume(dirSpec(std::string("long-") + format, tar), nullptr, dl());
    ASSERT_TRUE(v.ok()) << format << ": " << v.error().message;
    EXPECT_EQ(fs::readFile(root + "/pool/long-" + format + "/" + longDir + "/" + longFile).valueOr(""), "x\n") << format;
    if (ustar) continue;
    // A name whose ".." comes after byte 100: only the long-name header says it escapes.
    std::string escape = root + "/escape-" + format + ".tar", deep(120, 'e');
    ASSERT_EQ(std::system(("set -e; echo x > " + root + "/escaped; mkdir -p " + src + "/" + deep + "; cd " + src + " && tar -P --format=" +
                           format + " -cf " + escape + " " + deep + "/../../escaped")
                              .c_str()),
              0);
    auto bad = backend->createVolume(dirSpec(std::string("escape-") + format, escape), nullptr, dl());
    ASSERT_FALSE(bad.ok()) << format;
    EXPECT_NE(bad.error().message.find("would be written outside the volume"), std::string::npos) << format << ": " << bad.error().message;
  }
}

// Scanned in any chunking, the same archive gives the same answer.
TEST(DirVolumeHelpers, TarScanIsIndependentOfChunking) {
  std::string h(512, '\0');
  std::memcpy(h.data(), "a/b", 3);
  std::memcpy(&h[100], "0000644", 7);
  std::memcpy(&h[124], "00000000005", 11);
  h[156] = '0';
  std::memcpy(&h[257], "ustar\0" "00", 8);
  std::memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(&h[148], 8, "%06o", sum);
  std::string archive = h + "hello" + std::string(507, '\0') + std::string(1024, '\0');
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{512}, archive.size()}) {
    TarScan scan({});
    for (size_t off = 0; off < archive.size(); off += chunk) ASSERT_TRUE(scan.feed(std::string_view(archive).substr(off, chunk)).ok()) << chunk;
    EXPECT_TRUE(scan.finish().ok()) << chunk;
    EXPECT_TRUE(scan.ended());
    EXPECT_EQ(scan.members(), 1u);
  }
  TarScan capped({4, 10});
  auto st = capped.feed(archive);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("unpack_max_bytes"), std::string::npos) << st.error().message;
  TarScan cut({});
  ASSERT_TRUE(cut.feed(std::string_view(archive).substr(0, 600)).ok());
  EXPECT_FALSE(cut.finish().ok());
}

TEST_F(DirVolumeTest, EmptyAndUnpackedVolumesAreListedWithTheirSize) {
  auto empty = backend->createVolume(dirSpec("empty"), nullptr, dl());
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_TRUE(empty->directory);
  EXPECT_TRUE(fs::isDirectory(root + "/pool/empty"));
  for (const char* flags : {"", "-z", "-J", "--zstd"}) {
    std::string name = std::string("r") + (flags[0] ? flags + 1 : "plain");
    auto v = backend->createVolume(dirSpec(name, makeTarball(name + ".tar", flags)), nullptr, dl());
    ASSERT_TRUE(v.ok()) << flags << ": " << v.error().message;
    EXPECT_EQ(fs::readFile(root + "/pool/" + name + "/etc/motd").valueOr(""), "hello");
    EXPECT_GE(v->capacity, 100005u);
    EXPECT_GE(v->allocation, 100000u);
    char link[64] = {};
    EXPECT_GT(::readlink((root + "/pool/" + name + "/bin/link").c_str(), link, sizeof link - 1), 0);
    EXPECT_STREQ(link, "/bin/blob");
  }
  bool listed = false;
  for (const auto& v : backend->listVolumes(dl()).valueOr({}))
    if (v.name == "rplain") listed = v.directory && v.capacity >= 100005;
  EXPECT_TRUE(listed);
  auto resolved = backend->resolve(vol("rplain"), dl());
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(resolved->path, root + "/pool/rplain");
}

// A tree's top is the container's "/": 0755 inside a pool directory that keeps host users out
// (built 0700), 0700 in one they can enter.
TEST_F(DirVolumeTest, TreeTopIsOpenOnlyBehindAClosedPoolDirectory) {
  auto mode = [](const std::string& p) {
    struct stat st{};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
  };
  EXPECT_EQ(mode(root + "/pool"), 0700);
  ASSERT_TRUE(backend->createVolume(dirSpec("closed", makeTarball("c.tar", "")), nullptr, dl()).ok());
  EXPECT_EQ(mode(root + "/pool/closed"), 0755);
  ASSERT_EQ(::chmod((root + "/pool").c_str(), 0755), 0);
  ASSERT_TRUE(backend->createVolume(dirSpec("open", makeTarball("o.tar", "")), nullptr, dl()).ok());
  ASSERT_TRUE(backend->createVolume(dirSpec("open-empty"), nullptr, dl()).ok());
  EXPECT_EQ(mode(root + "/pool/open"), 0700);
  EXPECT_EQ(mode(root + "/pool/open-empty"), 0700);
  // A pool directory older versions made 0711 is closed when the pool starts, and the 0700
  // tops its trees got then are opened: their containers' users can enter "/" again.
  ASSERT_EQ(::chmod((root + "/pool").c_str(), 0711), 0);
  ASSERT_TRUE(backend->start(dl()).ok());
  EXPECT_EQ(mode(root + "/pool"), 0700);
  EXPECT_EQ(mode(root + "/pool/open"), 0755);
  EXPECT_EQ(mode(root + "/pool/open-empty"), 0755);
  EXPECT_EQ(mode(root + "/pool/closed"), 0755);
  // Only a tree's top: what the container keeps 0700 inside stays so.
  ASSERT_TRUE(fs::makeDirs(root + "/pool/open/root", 0700).ok());
  ASSERT_TRUE(backend->start(dl()).ok());
  EXPECT_EQ(mode(root + "/pool/open/root"), 0700);
}

TEST_F(DirVolumeTest, CloneCopiesAndDeleteRemovesTheTree) {
  ASSERT_TRUE(backend->createVolume(dirSpec("base", makeTarball("b.tar", "-z")), nullptr, dl()).ok());
  CloneOptions linked;  // linked is the default: a directory is copied anyway
  auto c = backend->cloneVolume(vol("base"), "copy", linked, dl());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->directory);
  ASSERT_TRUE(fs::writeFileAtomic(root + "/pool/copy/etc/motd", "changed").ok());
  EXPECT_EQ(fs::readFile(root + "/pool/base/etc/motd").valueOr(""), "hello");
  ASSERT_TRUE(backend->deleteVolume("copy", dl()).ok());
  EXPECT_FALSE(fs::exists(root + "/pool/copy"));
  EXPECT_TRUE(fs::exists(root + "/pool/base/etc/motd"));
}

TEST_F(DirVolumeTest, OperationsWithoutMeaningAreRefused) {
  ASSERT_TRUE(backend->createVolume(dirSpec("d"), nullptr, dl()).ok());
  auto resize = backend->resizeVolume(vol("d"), 1 << 30, false, dl());
  ASSERT_FALSE(resize.ok());
  EXPECT_NE(resize.error().message.find("directory volume"), std::string::npos);
  EXPECT_FALSE(backend->openVolume("d", StreamMode::read, dl()).ok());
  EXPECT_FALSE(backend->openVolume("d", StreamMode::write, dl()).ok());
  EXPECT_FALSE(backend->wipeVolume(vol("d"), nullptr, dl()).ok());
  EXPECT_TRUE(fs::isDirectory(root + "/pool/d"));
}

TEST_F(DirVolumeTest, BadTarballsCreateNothing) {
  std::string notTar = root + "/not.tar";
  ASSERT_TRUE(fs::writeFileAtomic(notTar, "just some text, not an archive").ok());
  auto bad = backend->createVolume(dirSpec("v1", notTar), nullptr, dl());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("not a tar archive"), std::string::npos) << bad.error().message;
  auto missing = backend->createVolume(dirSpec("v2", root + "/nothing.tar"), nullptr, dl());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("does not exist"), std::string::npos);
  // A member named ../escaped (GNU tar keeps it with -P): refused before anything is written.
  ASSERT_EQ(std::system(("set -e; mkdir -p " + root + "/e/in; echo x > " + root + "/e/escaped; cd " + root +
                         "/e/in && tar -P -cf " + root + "/escape.tar ../escaped")
                            .c_str()),
            0);
  auto escape = backend->createVolume(dirSpec("v3", root + "/escape.tar"), nullptr, dl());
  ASSERT_FALSE(escape.ok());
  EXPECT_NE(escape.error().message.find("outside the volume"), std::string::npos) << escape.error().message;
  // A truncated gzip archive fails while unpacking: the partial tree goes too.
  std::string good = makeTarball("t.tar.gz", "-z");
  ASSERT_EQ(::truncate(good.c_str(), 2000), 0);
  auto truncated = backend->createVolume(dirSpec("v4", good), nullptr, dl());
  EXPECT_FALSE(truncated.ok());
  EXPECT_EQ(names(), std::vector<std::string>{});
  EXPECT_EQ(fs::listDir(root + "/pool").valueOr({"?"}), std::vector<std::string>{});
}

// The verdict on untrusted image files, made by the real qemu-img: only self-contained raw,
// ISO and qcow2 images pass; each refusal says why.
class ImageInspectTest : public DirPoolTest {
 protected:
  // qemu-img create ARGS... FILE SIZE in the test's directory; the verdict on the result.
  storage::ImageVerdict made(const std::string& name, const std::vector<std::string>& args, const std::string& size = "1M",
                             uint64_t maxVirtualSize = uint64_t{1} << 40) {
    std::vector<std::string> argv = {"qemu-img", "create", "-q"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(root + "/" + name);
    argv.push_back(size);
    // A LUKS header's key derivation first times itself with the thread's CPU clock, and QEMU
    // gives up ("Unable to get accurate CPU usage") when a busy machine's clock barely moved:
    // QEMU's measurement, not what this test is about, so it is tried again.
    auto r = runCommand(argv, dl());
    for (int again = 0; again < 3 && r.ok() && !r->success() && r->err.find("accurate CPU usage") != std::string::npos; ++again)
      r = runCommand(argv, dl());
    EXPECT_TRUE(r.ok() && r->success()) << (r.ok() ? r->describe() : r.error().message);
    return verdict(root + "/" + name, maxVirtualSize);
  }
  storage::ImageVerdict verdict(const std::string& path, uint64_t maxVirtualSize = uint64_t{1} << 40) {
    struct stat st{};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return storage::inspectImage(firstBytes(path, storage::kInspectHeadBytes), static_cast<uint64_t>(st.st_size), maxVirtualSize);
  }
  // Sets bits of a qcow2 v3 file's incompatible features (bytes 72-79, big-endian).
  void setIncompatibleBits(const std::string& path, uint8_t lowByte) {
    auto bytes = fs::readFile(path);
    ASSERT_TRUE(bytes.ok());
    (*bytes)[79] = static_cast<char>((*bytes)[79] | lowByte);
    ASSERT_TRUE(fs::writeFileAtomic(path, *bytes, 0600).ok());
  }
};

TEST_F(ImageInspectTest, SelfContainedImagesPass) {
  auto v3 = made("plain.qcow2", {"-f", "qcow2"}, "3M");
  EXPECT_TRUE(v3.ok()) << v3.refused;
  EXPECT_EQ(v3.kind, ImageKind::qcow2);
  EXPECT_EQ(v3.virtualSize, 3u << 20);
  auto v2 = made("v2.qcow2", {"-f", "qcow2", "-o", "compat=0.10"});
  EXPECT_TRUE(v2.ok()) << v2.refused;
  // Incompatible features QEMU opens without anything outside the file.
  auto zstd = made("zstd.qcow2", {"-f", "qcow2", "-o", "compression_type=zstd"});
  EXPECT_TRUE(zstd.ok()) << zstd.refused;
  auto l2 = made("l2.qcow2", {"-f", "qcow2", "-o", "extended_l2=on"});
  EXPECT_TRUE(l2.ok()) << l2.refused;
  auto big = made("big.qcow2", {"-f", "qcow2", "-o", "cluster_size=2M"});
  EXPECT_TRUE(big.ok()) << big.refused;
  auto raw = made("disk.img", {"-f", "raw"}, "2M");
  EXPECT_TRUE(raw.ok()) << raw.refused;
  EXPECT_EQ(raw.kind, ImageKind::raw);
  EXPECT_EQ(raw.virtualSize, 2u << 20);
  std::string iso = std::string(32769, '\0') + "CD001" + std::string(4000, '\0');
  ASSERT_TRUE(fs::writeFileAtomic(root + "/cd.iso", iso, 0600).ok());
  EXPECT_EQ(verdict(root + "/cd.iso").kind, ImageKind::iso);
}

TEST_F(ImageInspectTest, AnythingQemuWouldOpenBesidesTheFileIsRefused) {
  ASSERT_EQ(runCommand({"qemu-img", "create", "-q", "-f", "raw", root + "/base.img", "1M"}, dl())->exitCode, 0);
  auto backed = made("backed.qcow2", {"-f", "qcow2", "-b", root + "/base.img", "-F", "raw"});
  EXPECT_NE(backed.refused.find("backing file"), std::string::npos) << backed.refused;
  auto relative = made("relative.qcow2", {"-f", "qcow2", "-u", "-b", "../../etc/shadow", "-F", "raw"});
  EXPECT_NE(relative.refused.find("backing file"), std::string::npos) << relative.refused;
  auto jsonName = made("json.qcow2", {"-f", "qcow2", "-u", "-b", "json:{\"driver\":\"file\",\"filename\":\"/etc/shadow\"}", "-F", "raw"});
  EXPECT_NE(jsonName.refused.find("backing file"), std::string::npos) << jsonName.refused;
  // The review's C2: the guest's data in a host file.
  ASSERT_TRUE(fs::writeFileAtomic(root + "/host-file", std::string(1 << 20, 'h'), 0600).ok());
  auto dataFile = made("data.qcow2", {"-f", "qcow2", "-o", "data_file=" + root + "/host-file,data_file_raw=on"});
  EXPECT_NE(dataFile.refused.find("external data file"), std::string::npos) << dataFile.refused;
  auto luks = made("secret.qcow2", {"--object", "secret,id=s0,data=pass", "-f", "qcow2", "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10"});
  EXPECT_NE(luks.refused.find("encrypted"), std::string::npos) << luks.refused;
  // Bits QEMU's own tools set: corrupt, and one no QEMU knows.
  made("corrupt.qcow2", {"-f", "qcow2"});
  setIncompatibleBits(root + "/corrupt.qcow2", 2);
  EXPECT_NE(verdict(root + "/corrupt.qcow2").refused.find("corrupt"), std::string::npos);
  made("unknown.qcow2", {"-f", "qcow2"});
  setIncompatibleBits(root + "/unknown.qcow2", 0x40);
  EXPECT_NE(verdict(root + "/unknown.qcow2").refused.find("unknown incompatible qcow2 features (0x40)"), std::string::npos);
  // A header cut short, and a virtual size over the limit.
  ASSERT_TRUE(fs::writeFileAtomic(root + "/short.qcow2", firstBytes(root + "/corrupt.qcow2", 90), 0600).ok());
  EXPECT_NE(verdict(root + "/short.qcow2").refused.find("incomplete"), std::string::npos);
  auto huge = made("huge.qcow2", {"-f", "qcow2"}, "2G", uint64_t{1} << 30);
  EXPECT_NE(huge.refused.find("over the limit"), std::string::npos) << huge.refused;
}

TEST_F(ImageInspectTest, OtherFormatsAreRefusedByNameNotTakenForRaw) {
  for (const char* format : {"vmdk", "vhdx", "vdi", "qed", "vpc", "parallels"}) {
    auto v = made(std::string("disk.") + format, {"-f", format});
    EXPECT_FALSE(v.ok()) << format;
    EXPECT_NE(v.refused.find("only raw, qcow2 and ISO"), std::string::npos) << format << ": " << v.refused;
  }
  EXPECT_NE(made("disk.luks", {"--object", "secret,id=s0,data=pass", "-f", "luks", "-o", "key-secret=s0,iter-time=10"}).refused.find("LUKS"),
            std::string::npos);
}

}  // namespace

// ---------------------------------------------------------------- a forged header (finding C1)

// A guest writes a qcow2 header naming a host file into its raw disk. Given the volume's record
// (raw), every backend operation treats those bytes as bytes: nothing opens the host file.
TEST_F(DirPoolTest, ForgedQcow2HeaderInARawVolumeIsNeverFollowed) {
  const std::string secret = root + "/secret";
  ASSERT_TRUE(fs::writeFileAtomic(secret, std::string("TOPSECRET-host-file\n") + std::string(4096, 'S'), 0600).ok());
  ASSERT_TRUE(backend->createVolume(spec("victim.qcow2", 8 << 20, model::DiskFormat::raw), nullptr, dl()).ok());
  const std::string victimPath = root + "/pool/victim.qcow2";
  const std::string forged = root + "/forged.qcow2";
  auto made = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw", forged, "1G"});
  ASSERT_TRUE(made.ok() && made->success());
  ASSERT_EQ(std::system(("dd if=" + forged + " of=" + victimPath + " conv=notrunc status=none").c_str()), 0);
  const std::string header = firstBytes(victimPath, 512);

  // What the bytes say, and what the pool service recorded.
  model::Volume victim = vol("victim.qcow2");
  EXPECT_EQ(victim.format, model::DiskFormat::qcow2);
  EXPECT_TRUE(victim.backingVolume.empty());
  EXPECT_NE(victim.probe.problem.find("not a volume of pool"), std::string::npos) << victim.probe.problem;
  EXPECT_EQ(victim.probe.fileSize, 8u << 20);
  victim.format = model::DiskFormat::raw;
  victim.capacity = victim.probe.fileSize;

  // Reads an image the way a guest would, in the format vmm gives QEMU.
  auto guestView = [&](const std::string& path, const char* format) {
    std::string out = root + "/view.raw";
    auto r = runCommand({"qemu-img", "convert", "-f", format, "-O", "raw", path, out});
    EXPECT_TRUE(r.ok() && r->success()) << (r.ok() ? r->err : r.error().message);
    auto bytes = fs::readFile(out, 64 << 20);
    (void)fs::removeFile(out);
    return bytes.ok() ? *bytes : std::string();
  };

  // Linked clone: the overlay names the base as raw, and is the base's size.
  CloneOptions linked;
  auto clone = backend->cloneVolume(victim, "clone", linked, dl());
  ASSERT_TRUE(clone.ok()) << clone.error().message;
  EXPECT_EQ(clone->capacity, 8u << 20);
  EXPECT_EQ(clone->probe.backingFormat, model::DiskFormat::raw);
  std::string seen = guestView(clone->path, "qcow2");
  EXPECT_EQ(seen.find("TOPSECRET"), std::string::npos);
  EXPECT_EQ(seen.substr(0, 512), header);

  // Full clone: a byte-for-byte copy.
  CloneOptions full;
  full.linked = false;
  auto copy = backend->cloneVolume(victim, "copy", full, dl());
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  EXPECT_EQ(fs::readFile(copy->path, 64 << 20).valueOr(""), fs::readFile(victimPath, 64 << 20).valueOr("x"));

  // Resize: only the size changes.
  ASSERT_TRUE(backend->resizeVolume(victim, 16 << 20, false, dl()).ok());
  struct stat st{};
  ASSERT_EQ(::stat(victimPath.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 16 << 20);
  EXPECT_EQ(firstBytes(victimPath, 512), header);
  victim.capacity = 16 << 20;

  // Wipe of the linked clone keeps it on the raw base; wipe of the victim gives zeros.
  model::Volume cloneRecord = *clone;
  cloneRecord.backingVolume = "victim.qcow2";
  ASSERT_TRUE(backend->wipeVolume(cloneRecord, &victim, dl()).ok());
  EXPECT_EQ(vol("clone").probe.backingFormat, model::DiskFormat::raw);
  EXPECT_EQ(guestView(clone->path, "qcow2").find("TOPSECRET"), std::string::npos);
  ASSERT_TRUE(backend->wipeVolume(victim, nullptr, dl()).ok());
  EXPECT_EQ(fs::readFile(victimPath, 64 << 20).valueOr("x"), std::string(16 << 20, '\0'));

  // Resolving gives the recorded format.
  auto disk = backend->resolve(victim, dl());
  ASSERT_TRUE(disk.ok());
  EXPECT_EQ(disk->format, model::DiskFormat::raw);
}

// Headers vmm cannot open as nothing but the file and a backing volume of the pool.
TEST_F(DirPoolTest, HeadersThatReachOutsideThePoolAreDescribedAsProblems) {
  auto plant = [&](const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> argv = {"qemu-img", "create", "-q", "-f", "qcow2"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {root + "/pool/" + name, "1M"});
    auto r = runCommand(argv);
    ASSERT_TRUE(r.ok() && r->success()) << name << ": " << (r.ok() ? r->err : r.error().message);
  };
  ASSERT_TRUE(fs::writeFileAtomic(root + "/outside", std::string(1 << 20, 'o'), 0600).ok());
  plant("abs", {"-u", "-b", root + "/outside", "-F", "raw"});
  plant("rel", {"-u", "-b", "../outside", "-F", "raw"});
  plant("json", {"-u", "-b", "json:{\"driver\":\"file\",\"filename\":\"" + root + "/outside\"}", "-F", "raw"});
  plant("datafile", {"-o", "data_file=" + root + "/outside,data_file_raw=on"});
  plant("plain", {});
  plant("inpool", {"-u", "-b", "plain", "-F", "qcow2"});
  for (const char* name : {"abs", "rel", "json", "datafile"}) {
    auto v = vol(name);
    EXPECT_FALSE(v.probe.problem.empty()) << name;
    EXPECT_TRUE(v.backingVolume.empty()) << name;
  }
  EXPECT_TRUE(vol("plain").probe.problem.empty()) << vol("plain").probe.problem;
  auto inpool = vol("inpool");
  EXPECT_TRUE(inpool.probe.problem.empty()) << inpool.probe.problem;
  EXPECT_EQ(inpool.backingVolume, "plain");
  EXPECT_EQ(inpool.probe.backingFormat, model::DiskFormat::qcow2);
}

// ---------------------------------------------------------------- qemu-img's sandbox

// qemu-img sandboxed (as vmmd sets it) while this lives.
struct SandboxedQemuImg {
  explicit SandboxedQemuImg(const std::string& root) {
    EXPECT_TRUE(fs::makeDirs(root + "/sandbox-root", 0700).ok());
    setQemuImgSandbox({1001065535, root + "/sandbox-root"});
  }
  ~SandboxedQemuImg() { setQemuImgSandbox({}); }
};

// Sandboxed, qemu-img runs as its uid in a private root holding the call's directory and files
// through idmapped binds: it copies and resizes root's 0600 volumes, what it makes is root's,
// and a file outside what the call named - here one a hostile header points at - is not there.
TEST_F(DirPoolTest, SandboxedQemuImgSeesOnlyWhatTheCallNames) {
  VMM_REQUIRE(::geteuid() == 0, "root (mount and user namespaces)");
  SandboxedQemuImg sandboxed(root);
  const std::string pool = root + "/pool", data = "vmm-bytes:" + std::string(65536, 'v');
  ASSERT_TRUE(fs::writeFileAtomic(pool + "/src.raw", data, 0600).ok());
  ASSERT_EQ(::truncate((pool + "/src.raw").c_str(), 1 << 20), 0);
  ASSERT_TRUE(convertImage(pool + "/src.raw", model::DiskFormat::raw, pool + "/copy.qcow2", model::DiskFormat::qcow2, nullptr, dl()).ok());
  ASSERT_TRUE(resizeImage(pool + "/copy.qcow2", model::DiskFormat::qcow2, 2 << 20, false, dl()).ok());
  std::string out = root + "/out";
  ASSERT_TRUE(fs::makeDirs(out, 0700).ok());
  auto back = convertImage(pool + "/copy.qcow2", model::DiskFormat::qcow2, out + "/back.raw", model::DiskFormat::raw, nullptr, dl());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(fs::readFile(out + "/back.raw", 4 << 20).valueOr("").substr(0, data.size()), data);
  for (const char* made : {"/pool/copy.qcow2", "/out/back.raw"}) {
    struct stat st{};
    ASSERT_EQ(::stat((root + made).c_str(), &st), 0) << made;
    EXPECT_EQ(st.st_uid, 0u) << made;
    EXPECT_EQ(st.st_size > 0, true) << made;
  }
  struct stat grown{};
  ASSERT_EQ(::stat((out + "/back.raw").c_str(), &grown), 0);
  EXPECT_EQ(grown.st_size, 2 << 20) << "the resize happened";

  // A qcow2 whose header names a root-only file elsewhere: outside the sandbox qemu-img would
  // copy its bytes; inside, the file does not exist.
  ASSERT_TRUE(fs::makeDirs(root + "/elsewhere", 0700).ok());
  ASSERT_TRUE(fs::writeFileAtomic(root + "/elsewhere/secret", "TOPSECRET" + std::string(4096, 's'), 0600).ok());
  auto evil = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", root + "/elsewhere/secret", "-F", "raw", pool + "/evil.qcow2", "1M"});
  ASSERT_TRUE(evil.ok() && evil->success());
  auto leak = convertImage(pool + "/evil.qcow2", model::DiskFormat::qcow2, out + "/leak.raw", model::DiskFormat::raw, nullptr, dl());
  ASSERT_FALSE(leak.ok());
  EXPECT_NE(leak.error().message.find("No such file"), std::string::npos) << leak.error().message;
  EXPECT_EQ(fs::readFile(out + "/leak.raw").valueOr("").find("TOPSECRET"), std::string::npos);

  // Of the target's directory only the target exists for it: a header naming a file next to
  // the target (another volume of the pool an import lands in) finds nothing there either.
  ASSERT_TRUE(fs::writeFileAtomic(out + "/neighbour.raw", "NEIGHBOUR" + std::string(4096, 'n'), 0600).ok());
  auto near = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", out + "/neighbour.raw", "-F", "raw", pool + "/near.qcow2", "1M"});
  ASSERT_TRUE(near.ok() && near->success());
  auto reach = convertImage(pool + "/near.qcow2", model::DiskFormat::qcow2, out + "/reach.raw", model::DiskFormat::raw, nullptr, dl());
  ASSERT_FALSE(reach.ok()) << "qemu-img read a file next to its target";
  EXPECT_NE(reach.error().message.find("No such file"), std::string::npos) << reach.error().message;
}

TEST_F(DirPoolTest, SandboxedQemuImgChangesAndReadsOnlyTheFilesItIsGiven) {
  VMM_REQUIRE(::geteuid() == 0, "root (mount and user namespaces)");
  SandboxedQemuImg sandboxed(root);
  // A linked clone in one root-only directory on a base in another, as a domain's disk on an image.
  ASSERT_TRUE(fs::makeDirs(root + "/images", 0700).ok());
  ASSERT_TRUE(fs::makeDirs(root + "/disks", 0700).ok());
  const std::string base = root + "/images/base.raw", top = root + "/disks/top.qcow2";
  ASSERT_TRUE(fs::writeFileAtomic(base, std::string(1 << 20, '\0'), 0600).ok());
  auto made = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", top});
  ASSERT_TRUE(made.ok() && made->success());

  auto snap = runQemuImg({"snapshot", "-c", "s1", top}, {{}, {top}, {base}}, dl(), "snapshot");
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  auto listed = runCommand({"qemu-img", "snapshot", "-l", top});
  ASSERT_TRUE(listed.ok());
  EXPECT_NE(listed->out.find("s1"), std::string::npos) << listed->out;
  // The base not given: it does not exist for qemu-img, whatever the header says.
  auto blind = runQemuImg({"snapshot", "-c", "s2", top}, {{}, {top}, {}}, dl(), "snapshot");
  ASSERT_FALSE(blind.ok());
  EXPECT_NE(blind.error().message.find("No such file"), std::string::npos) << blind.error().message;
  // Given to read only: a commit cannot write into it; given to change, it can.
  auto readOnly = runQemuImg({"commit", "-q", "-f", "qcow2", top}, {{}, {top}, {base}}, dl(), "commit");
  ASSERT_FALSE(readOnly.ok());
  auto commit = runQemuImg({"commit", "-q", "-f", "qcow2", top}, {{}, {top, base}, {}}, dl(), "commit");
  EXPECT_TRUE(commit.ok()) << commit.error().message;
  for (const auto& path : {base, top}) {
    struct stat st{};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u) << path;
  }
}
