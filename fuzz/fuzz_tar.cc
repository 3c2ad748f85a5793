// Tarballs for directory volumes: checkTarMemberName, tarCompressionFlag, and unpackTarball on
// archives built from the input (names, types, link targets, modes). Whatever the archive,
// nothing is created outside the destination. tar runs as nobody (a wrapper first in PATH), so
// a miss lands only where nobody may write, and that is watched.
//
// Input: a selector byte, then the text (0: a member name, 1: archive head bytes, 2: members
// read with FuzzedDataProvider, 3: raw archive bytes for TarScan, fed in chunks of the size
// the first byte gives; the same answer whatever the chunking).
#include <dirent.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "fuzz/fuzz_util.h"
#include "storage/dir/dir_volume.h"

using namespace vmm;

namespace {

constexpr uid_t kNobody = 65534;

struct Sandbox {
  std::string top;  // 0777: parent of the destination, holds a canary and a sibling directory
  Sandbox() {
    top = fuzz::tempDir("tar");  // under run.sh's TMPDIR, which is 0711: nobody can reach it by path
    ::chmod(top.c_str(), 0777);
    std::string bin = top + "/bin";
    ::mkdir(bin.c_str(), 0755);
    std::string tar = bin + "/tar";
    FILE* f = std::fopen(tar.c_str(), "w");
    std::fprintf(f, "#!/bin/sh\nexec setpriv --reuid=%u --regid=%u --clear-groups /usr/bin/tar \"$@\"\n", kNobody, kNobody);
    std::fclose(f);
    ::chmod(tar.c_str(), 0755);
    std::string path = bin + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
    ::setenv("PATH", path.c_str(), 1);
  }
};

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) out.insert(e->d_name);
    ::closedir(d);
  }
  return out;
}

// Entries of the world-writable directories that nobody owns (what a tar escape would leave).
std::set<std::string> nobodyFiles() {
  std::set<std::string> out;
  for (const char* d : {"/tmp", "/var/tmp", "/dev/shm"})
    for (const auto& n : entries(d)) {
      struct stat st{};
      std::string p = std::string(d) + "/" + n;
      if (::lstat(p.c_str(), &st) == 0 && st.st_uid == kNobody) out.insert(p);
    }
  return out;
}

void octal(char* field, size_t width, uint64_t v) {
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(v));
}

// One ustar member.
std::string member(const std::string& name, char type, const std::string& link, unsigned mode, const std::string& body) {
  char h[512] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  octal(h + 100, 8, mode);
  octal(h + 108, 8, 0);
  octal(h + 116, 8, 0);
  octal(h + 124, 12, type == '0' ? body.size() : 0);
  octal(h + 136, 12, 1700000000);
  h[156] = type;
  std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 100));
  std::memcpy(h + 257, "ustar\0" "00", 8);
  if (type == '3' || type == '4') {
    octal(h + 329, 8, 1);
    octal(h + 337, 8, 3);
  }
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h + 148, 8, "%06o", sum);
  std::string out(h, 512);
  if (type == '0') {
    out += body;
    out.append((512 - body.size() % 512) % 512, '\0');
  }
  return out;
}

void unpack(FuzzedDataProvider& fdp) {
  static Sandbox box;
  static const std::set<std::string> nobodyBefore = nobodyFiles();
  static const std::vector<std::string> names = {"a", "a/b", "../x", "..", "./..", "a/../../x", "/etc/x", "out",
                                                  "out/x", "../outside/x", "outside", "l", "l/x", "dev/sda"};
  static const std::vector<std::string> links = {"/", "..", "../outside", "../..", "/tmp", "a", "../canary", "/etc/passwd"};
  std::string archive;
  int n = fdp.ConsumeIntegralInRange<int>(1, 6);
  for (int i = 0; i < n; ++i) {
    std::string name = fdp.ConsumeBool() ? names[fdp.ConsumeIntegralInRange<size_t>(0, names.size() - 1)]
                                         : fdp.ConsumeRandomLengthString(99);
    const char types[] = {'0', '0', '5', '2', '1', '3', '4', '6'};
    char type = fdp.PickValueInArray(types);
    std::string link = fdp.ConsumeBool() ? links[fdp.ConsumeIntegralInRange<size_t>(0, links.size() - 1)]
                                         : fdp.ConsumeRandomLengthString(99);
    unsigned mode = fdp.ConsumeIntegralInRange<unsigned>(0, 07777);
    archive += member(name, type, link, mode, fdp.ConsumeRandomLengthString(600));
  }
  archive.append(1024, '\0');

  std::string work = box.top + "/w";
  (void)runCommand({"rm", "-rf", work});
  ::mkdir(work.c_str(), 0777);
  ::chmod(work.c_str(), 0777);
  std::string dest = work + "/dest", outside = work + "/outside", tarball = box.top + "/in.tar";
  ::mkdir(dest.c_str(), 0777);
  ::mkdir(outside.c_str(), 0777);
  ::chmod(dest.c_str(), 0777);
  ::chmod(outside.c_str(), 0777);
  FUZZ_CHECK(fs::writeFileAtomic(work + "/canary", "canary", 0666).ok(), "canary");
  FUZZ_CHECK(fs::writeFileAtomic(tarball, archive, 0644).ok(), "tarball");

  (void)storage::unpackTarball(tarball, dest, Deadline::after(Millis(20000)));

  FUZZ_CHECK((entries(work) == std::set<std::string>{"canary", "dest", "outside"}), "something was created next to the destination");
  FUZZ_CHECK(entries(outside).empty(), "something was written to the sibling directory");
  auto canary = fs::readFile(work + "/canary", 100);
  FUZZ_CHECK(canary.ok() && *canary == "canary", "the canary next to the destination changed");
  auto now = nobodyFiles();
  for (const auto& p : now) FUZZ_CHECK(nobodyBefore.count(p), "tar wrote " + p + " outside the destination");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 8192) return 0;
  std::string_view s = fuzz::bytes(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      if (storage::checkTarMemberName(s).ok()) {
        FUZZ_CHECK(s.empty() || s[0] != '/', "absolute member accepted: " + fuzz::show(s));
        for (const auto& part : split(s, '/')) FUZZ_CHECK(part != "..", "member with .. accepted: " + fuzz::show(s));
      }
      break;
    case 1: {
      auto flag = storage::tarCompressionFlag(s);
      if (flag.ok()) {
        static const std::set<std::string> known = {"", "--gzip", "--xz", "--bzip2", "--zstd"};
        FUZZ_CHECK(known.count(*flag), "flag " + *flag);
        if (flag->empty()) FUZZ_CHECK(s.size() >= 262 && s.substr(257, 5) == "ustar", "plain tar without ustar magic");
      }
      break;
    }
    case 2: {
      FuzzedDataProvider fdp(data + 1, size - 1);
      unpack(fdp);
      break;
    }
    case 3: {
      if (s.empty()) break;
      size_t chunk = 1 + static_cast<unsigned char>(s[0]) * 7;
      std::string_view archive = s.substr(1);
      storage::TarLimits limits{4096, 8};
      storage::TarScan whole(limits), pieces(limits);
      auto a = whole.feed(archive);
      Status b;
      for (size_t off = 0; b.ok() && off < archive.size(); off += chunk) b = pieces.feed(archive.substr(off, chunk));
      if (a.ok()) a = whole.finish();
      if (b.ok()) b = pieces.finish();
      FUZZ_CHECK(a.ok() == b.ok() && whole.members() == pieces.members(), "the answer depends on the chunking");
      FUZZ_CHECK(whole.members() <= limits.maxFiles + 1, "members past the cap were counted");
      if (!a.ok()) FUZZ_CHECK(a.error().message.rfind("from_tar: ", 0) == 0, "message " + a.error().message);
      break;
    }
  }
  return 0;
}
