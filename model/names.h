// Validation of names and identifiers shared by every object type.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace vmm::model {

constexpr size_t kMaxNameLength = 63;

// Object names (domains, pools, volumes, networks, snapshots): 1-63 characters of
// [A-Za-z0-9_.-], starting with a letter or digit. Safe in paths, interface names and URLs.
// `what` names the kind of object in the message ("domain name").
Status validateName(std::string_view name, std::string_view what);
// Volume names may additionally end in an extension and be up to 255 characters, but not in
// one of vmm's temporary suffixes (kTemporarySuffixes), so that no volume can be mistaken for,
// or deleted as, the leftover of an unfinished one.
Status validateVolumeName(std::string_view name);
// Suffixes of the files vmm writes next to a volume while making it (".upload.partial" ends in
// ".partial"; ".err" is qemu-img's captured stderr; ".revert-old" is a container rootfs being
// replaced by a snapshot revert, which removes any such name first).
inline constexpr std::string_view kTemporarySuffixes[] = {".partial", ".err", ".revert-old"};
bool hasTemporarySuffix(std::string_view fileName);
// Label keys: [a-z0-9] start, then [a-z0-9._/-], at most 63; values at most 255 printable.
Status validateLabel(std::string_view key, std::string_view value);

// MAC addresses: "52:54:00:12:34:56", case-insensitive input, lower-case canonical output.
Result<std::string> normalizeMac(std::string_view mac);
// A random locally administered unicast MAC in QEMU's 52:54:00 prefix.
std::string generateMac();
// Linux interface names: 1-15 characters of [A-Za-z0-9_.-], not "." or "..".
Status validateIfName(std::string_view name);
// An absolute path without NUL and without "..": used for host paths in definitions.
Status validateAbsolutePath(std::string_view path, std::string_view what);

}  // namespace vmm::model
