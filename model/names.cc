#include "model/names.h"

#include <cstdio>

#include "base/random.h"
#include "base/strings.h"

namespace vmm::model {

namespace {
bool isAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
}  // namespace

Status validateName(std::string_view name, std::string_view what) {
  std::string w(what);
  if (name.empty()) return invalidArgument(w + " must not be empty");
  if (name.size() > kMaxNameLength)
    return invalidArgument(w + " " + quote(name.substr(0, 20)) + "... is longer than " + std::to_string(kMaxNameLength) + " characters");
  if (!isAlnum(name[0])) return invalidArgument(w + " " + quote(name) + " must start with a letter or digit");
  for (char c : name) {
    if (!isAlnum(c) && c != '-' && c != '_' && c != '.')
      return invalidArgument(w + " " + quote(name) + " contains " + quote(std::string(1, c)) +
                             "; only letters, digits, '-', '_' and '.' are allowed");
  }
  return {};
}

Status validateVolumeName(std::string_view name) {
  if (name.empty()) return invalidArgument("volume name must not be empty");
  if (name.size() > 255) return invalidArgument("volume name is longer than 255 characters");
  if (!isAlnum(name[0])) return invalidArgument("volume name " + quote(name) + " must start with a letter or digit");
  for (char c : name) {
    if (!isAlnum(c) && c != '-' && c != '_' && c != '.' && c != '+')
      return invalidArgument("volume name " + quote(name) + " contains " + quote(std::string(1, c)) +
                             "; only letters, digits, '-', '_', '+' and '.' are allowed");
  }
  if (name.find("..") != std::string_view::npos) return invalidArgument("volume name " + quote(name) + " must not contain \"..\"");
  for (std::string_view suffix : kTemporarySuffixes) {
    if (name.ends_with(suffix))
      return invalidArgument("volume name " + quote(name) + " must not end in " + quote(suffix) + ": vmm names its unfinished files so");
  }
  return {};
}

bool hasTemporarySuffix(std::string_view fileName) {
  for (std::string_view suffix : kTemporarySuffixes)
    if (fileName.ends_with(suffix)) return true;
  return false;
}

Status validateLabel(std::string_view key, std::string_view value) {
  if (key.empty() || key.size() > 63) return invalidArgument("label key " + quote(key) + " must be 1-63 characters");
  auto lower = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower(key[0])) return invalidArgument("label key " + quote(key) + " must start with a lower-case letter or digit");
  for (char c : key) {
    if (!lower(c) && c != '.' && c != '_' && c != '-' && c != '/')
      return invalidArgument("label key " + quote(key) + " may only contain a-z, 0-9, '.', '_', '-' and '/'");
  }
  if (value.size() > 255) return invalidArgument("label " + quote(key) + ": value is longer than 255 characters");
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20) return invalidArgument("label " + quote(key) + ": value contains control characters");
  }
  return {};
}

Result<std::string> normalizeMac(std::string_view mac) {
  unsigned b[6];
  char tail;
  std::string s(mac);
  if (s.size() != 17 || std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
    return invalidArgument("invalid MAC address " + quote(mac) + " (expected six hex pairs like 52:54:00:12:34:56)");
  for (size_t i = 0; i < s.size(); ++i) {
    if (i % 3 == 2 ? s[i] != ':' : !isxdigit(static_cast<unsigned char>(s[i])))
      return invalidArgument("invalid MAC address " + quote(mac));
  }
  if (b[0] & 1) return invalidArgument("MAC address " + quote(mac) + " is a multicast address");
  if ((b[0] | b[1] | b[2] | b[3] | b[4] | b[5]) == 0) return invalidArgument("MAC address must not be all zeros");
  char out[32];
  std::snprintf(out, sizeof out, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  return std::string(out);
}

std::string generateMac() {
  unsigned char r[3];
  randomBytes(r, sizeof r);
  char out[32];
  std::snprintf(out, sizeof out, "52:54:00:%02x:%02x:%02x", r[0], r[1], r[2]);
  return out;
}

Status validateIfName(std::string_view name) {
  if (name.empty() || name.size() > 15) return invalidArgument("interface name " + quote(name) + " must be 1-15 characters");
  if (name == "." || name == "..") return invalidArgument("invalid interface name " + quote(name));
  // The port layer's charset: the name reaches ip, tc, nft and dnsmasq's command lines
  // (dnsmasq splits --interface on commas).
  for (char c : name) {
    if (!isAlnum(c) && c != '_' && c != '.' && c != '-')
      return invalidArgument("interface name " + quote(name) + " may only contain letters, digits, '_', '.' and '-'");
  }
  return {};
}

Status validateAbsolutePath(std::string_view path, std::string_view what) {
  std::string w(what);
  if (path.empty() || path[0] != '/') return invalidArgument(w + " must be an absolute path, got " + quote(path));
  if (path.size() > 4096) return invalidArgument(w + " is longer than 4096 characters");
  if (path.find('\0') != std::string_view::npos) return invalidArgument(w + " contains a NUL byte");
  for (const auto& part : split(path, '/')) {
    if (part == "..") return invalidArgument(w + " " + quote(path) + " must not contain \"..\"");
  }
  return {};
}

}  // namespace vmm::model
