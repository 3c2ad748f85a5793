// Name and path validators: whatever they accept is safe in the places the value goes to
// (file names, interface names on dnsmasq's and ip's command lines, JSON for QEMU, messages).
// Input: a selector byte, then the text.
#include <sys/stat.h>
#include <unistd.h>

#include <climits>

#include "base/fs.h"
#include "base/strings.h"
#include "fuzz/fuzz_util.h"
#include "model/names.h"
#include "model/net_addr.h"
#include "storage/dir/dir_backend.h"

using namespace vmm;

namespace {

bool hasAny(std::string_view s, std::string_view chars) { return s.find_first_of(chars) != std::string_view::npos; }
bool hasControl(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}
bool hasC0(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20) return true;
  return false;
}
bool asciiOnly(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}
bool hasComponent(std::string_view path, std::string_view part) {
  for (const auto& p : split(path, '/'))
    if (p == part) return true;
  return false;
}

// A pool-like directory with a way out (a symlink to /) and a way back in.
struct Root {
  std::string path;
  Root() {
    path = fuzz::tempDir("names");
    ::mkdir((path + "/sub").c_str(), 0700);
    (void)!::symlink("/", (path + "/out").c_str());
    (void)!::symlink(".", (path + "/sub/self").c_str());
    (void)!::symlink("../..", (path + "/sub/up").c_str());
    char real[PATH_MAX];
    if (::realpath(path.c_str(), real)) path = real;
  }
};

// The realpath of the deepest existing ancestor of `p`, plus the rest.
std::string resolvedPrefix(const std::string& p) {
  std::string probe = p, rest;
  char real[PATH_MAX];
  while (!::realpath(probe.c_str(), real)) {
    auto pos = probe.rfind('/');
    if (pos == std::string::npos || pos == 0) return "";
    rest = probe.substr(pos) + rest;
    probe = probe.substr(0, pos);
  }
  return std::string(real) + rest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 5000) return 0;
  static Root root;
  uint8_t which = data[0];
  std::string_view s = fuzz::bytes(data + 1, size - 1);
  const std::string shown = fuzz::show(s);

  switch (which % 9) {
    case 0:
      // Object names: used in file names, QEMU's -name, interface and nft table names.
      if (model::validateName(s, "name").ok()) {
        FUZZ_CHECK(!s.empty() && s.size() <= model::kMaxNameLength, "name length " + shown);
        FUZZ_CHECK(!hasAny(s, ",/\"';$`\\ \n\r\t:*?[]{}()<>|&!#~%@=+") && !hasControl(s) && asciiOnly(s), "name " + shown);
        FUZZ_CHECK(s != "." && s != ".." && s[0] != '-' && s[0] != '.', "name " + shown);
      }
      break;
    case 1:
      // Volume names: file names in a pool directory.
      if (model::validateVolumeName(s).ok()) {
        FUZZ_CHECK(!hasAny(s, "/\\,\"';$` \n") && !hasControl(s) && asciiOnly(s), "volume name " + shown);
        FUZZ_CHECK(s.find("..") == std::string_view::npos && s[0] != '.' && s[0] != '-', "volume name " + shown);
      }
      if (storage::validateVolumeName(std::string(s)).ok()) {
        FUZZ_CHECK(!s.empty() && s.size() <= 255 && s[0] != '.', "dir volume name " + shown);
        FUZZ_CHECK(s.find('/') == std::string_view::npos && !hasControl(s), "dir volume name " + shown);
      }
      break;
    case 2:
      // Interface names: argv of ip, dnsmasq's --interface (split on ','), nft rules.
      if (model::validateIfName(s).ok()) {
        FUZZ_CHECK(!s.empty() && s.size() <= 15 && s != "." && s != "..", "ifname " + shown);
        FUZZ_CHECK(!hasAny(s, "/:,\"';$`\\ *?[]{}()<>|&!#=") && !hasControl(s) && asciiOnly(s), "ifname " + shown);
      }
      break;
    case 3:
      if (model::validateAbsolutePath(s, "path").ok()) {
        FUZZ_CHECK(!s.empty() && s[0] == '/' && s.size() <= 4096, "path " + shown);
        FUZZ_CHECK(s.find('\0') == std::string_view::npos && !hasComponent(s, ".."), "path " + shown);
      }
      break;
    case 4: {
      // confinedPath: never a path that resolves outside the root, whatever the symlinks.
      auto p = fs::confinedPath(root.path, s);
      if (p.ok()) {
        FUZZ_CHECK(startsWith(*p, root.path + "/"), "confinedPath " + shown + " -> " + fuzz::show(*p));
        FUZZ_CHECK(p->find('\0') == std::string::npos && !hasComponent(*p, ".."), "confinedPath " + shown);
        std::string r = resolvedPrefix(*p);
        FUZZ_CHECK(r == root.path || startsWith(r, root.path + "/"), "confinedPath " + shown + " resolves to " + fuzz::show(r));
      }
      break;
    }
    case 5: {
      auto ip = model::parseIp(s);
      if (ip.ok()) {
        FUZZ_CHECK(s.find('\0') == std::string_view::npos, "parseIp accepted a NUL byte: " + shown);
        auto again = model::parseIp(ip->toString());
        FUZZ_CHECK(again.ok() && *again == *ip, "parseIp round trip " + shown);
        FUZZ_CHECK(!hasAny(ip->toString(), ",/\" \n"), "ip text " + shown);
      }
      break;
    }
    case 6: {
      auto c = model::parseCidr(s);
      if (c.ok()) {
        FUZZ_CHECK(s.find('\0') == std::string_view::npos, "parseCidr accepted a NUL byte: " + shown);
        FUZZ_CHECK(c->prefix >= 0 && c->prefix <= (c->address.v6 ? 128 : 32), "prefix " + shown);
        auto again = model::parseCidr(c->toString());
        FUZZ_CHECK(again.ok() && again->address == c->address && again->prefix == c->prefix, "parseCidr round trip " + shown);
        FUZZ_CHECK(c->contains(c->address) && c->contains(c->network()), "cidr contains " + shown);
        if (!c->address.v6) (void)c->netmask(), (void)c->broadcast();
      }
      break;
    }
    case 7: {
      auto mac = model::normalizeMac(s);
      if (mac.ok()) {
        FUZZ_CHECK(s.size() == 17 && mac->size() == 17, "mac " + shown);
        for (size_t i = 0; i < 17; ++i)
          FUZZ_CHECK(i % 3 == 2 ? (*mac)[i] == ':' : std::string_view("0123456789abcdef").find((*mac)[i]) != std::string_view::npos,
                     "mac " + shown);
        auto again = model::normalizeMac(*mac);
        FUZZ_CHECK(again.ok() && *again == *mac, "mac round trip " + shown);
      }
      break;
    }
    case 8: {
      // Labels: a key, '=', a value.
      auto eq = s.find('=');
      std::string_view key = s.substr(0, eq), value = eq == std::string_view::npos ? std::string_view() : s.substr(eq + 1);
      if (model::validateLabel(key, value).ok()) {
        FUZZ_CHECK(!hasAny(key, ",\"';$` \n=") && !hasControl(key) && asciiOnly(key), "label key " + shown);
        FUZZ_CHECK(!hasC0(value), "label value " + shown);
      }
      // quote() is how names reach messages and logs: no control characters survive.
      FUZZ_CHECK(!hasC0(quote(s)), "quote " + shown);
      break;
    }
  }
  return 0;
}
