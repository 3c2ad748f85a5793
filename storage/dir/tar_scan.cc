#include "storage/dir/tar_scan.h"

#include <algorithm>
#include <cstring>

#include "base/strings.h"
#include "model/units.h"
#include "storage/dir/dir_volume.h"

namespace vmm::storage {

namespace {

constexpr size_t kBlock = 512;
constexpr uint64_t kMaxMeta = 1 << 20;  // a GNU long name or a pax header

Error bad(std::string msg) { return invalidArgument("from_tar: " + std::move(msg)); }

std::string field(std::string_view h, size_t off, size_t len) {
  std::string_view f = h.substr(off, len);
  return std::string(f.substr(0, std::min(f.find('\0'), f.size())));
}

// An octal number (spaces and NULs around it), or GNU base-256 when the high bit is set.
std::optional<uint64_t> number(std::string_view f) {
  uint64_t v = 0;
  if (static_cast<unsigned char>(f[0]) == 0x80) {
    for (size_t i = 1; i < f.size(); ++i) {
      if (v >> 55) return std::nullopt;
      v = v << 8 | static_cast<unsigned char>(f[i]);
    }
    return v;
  }
  size_t i = 0;
  while (i < f.size() && f[i] == ' ') ++i;
  size_t digits = 0;
  for (; i < f.size() && f[i] >= '0' && f[i] <= '7'; ++i, ++digits) v = v << 3 | static_cast<unsigned>(f[i] - '0');
  for (; i < f.size(); ++i)
    if (f[i] != ' ' && f[i] != '\0') return std::nullopt;
  if (digits == 0 || digits > 21) return std::nullopt;
  return v;
}

bool checksumMatches(std::string_view h) {
  auto stored = number(h.substr(148, 8));
  if (!stored) return false;
  uint64_t unsignedSum = 0;
  int64_t signedSum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    char c = i >= 148 && i < 156 ? ' ' : h[i];
    unsignedSum += static_cast<unsigned char>(c);
    signedSum += static_cast<signed char>(c);
  }
  return *stored == unsignedSum || static_cast<int64_t>(*stored) == signedSum;  // tar accepts both
}

bool hasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// "./a//b/" -> "a/b" (names are checked for ".." before).
std::string normalized(std::string_view name) {
  std::string out;
  for (const auto& part : split(name, '/')) {
    if (part.empty() || part == ".") continue;
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

const char* kindOf(char type) {
  switch (type) {
    case '1': return "hard link";
    case '2': return "symbolic link";
    case '3': return "character device";
    case '4': return "block device";
    case '5': return "directory";
    case '6': return "fifo";
    default: return "member";
  }
}

}  // namespace

Status TarScan::fail(Error e) {
  state_ = State::failed;
  error_ = e;
  return e;
}

Status TarScan::feed(std::string_view bytes) {
  if (state_ == State::failed) return error_;
  while (!bytes.empty() && state_ != State::ended) {
    if (state_ == State::data) {
      // Skipped data need not be copied block by block.
      uint64_t skip = std::min<uint64_t>(remaining_, bytes.size());
      bytes.remove_prefix(skip);
      offset_ += skip;
      remaining_ -= skip;
      if (remaining_ == 0) state_ = State::header;
      continue;
    }
    size_t take = std::min(kBlock - have_, bytes.size());
    std::memcpy(pending_ + have_, bytes.data(), take);
    have_ += take;
    bytes.remove_prefix(take);
    if (have_ < kBlock) break;
    have_ = 0;
    offset_ += kBlock;
    if (auto st = block(std::string_view(pending_, kBlock)); !st.ok()) return fail(st.error());
  }
  return {};
}

Status TarScan::finish() {
  if (state_ == State::failed) return error_;
  if (state_ == State::data || state_ == State::meta) return fail(bad("the archive ends in the middle of member " + quote(current_)));
  if (have_ > 0) return fail(bad("the archive ends in the middle of a header"));
  return {};
}

Status TarScan::block(std::string_view b) {
  switch (state_) {
    case State::meta:
      metaData_.append(b.substr(0, std::min<uint64_t>(kBlock, metaSize_ - metaData_.size())));
      remaining_ -= kBlock;
      if (remaining_ == 0) return meta();
      return {};
    case State::zeroBlock:
      if (std::all_of(b.begin(), b.end(), [](char c) { return c == 0; })) {
        state_ = State::ended;
        return {};
      }
      return bad("a lone zero block at byte " + std::to_string(offset_ - 2 * kBlock) + " is followed by more members");
    case State::header:
      return header(b);
    default:
      return internalError("tar scan: unexpected state");
  }
}

Status TarScan::header(std::string_view h) {
  if (std::all_of(h.begin(), h.end(), [](char c) { return c == 0; })) {
    state_ = State::zeroBlock;
    return {};
  }
  uint64_t at = offset_ - kBlock;
  if (!checksumMatches(h)) return bad("the header at byte " + std::to_string(at) + " has a bad checksum (a damaged archive, or not a tar archive)");
  char type = h[156];
  std::string name = field(h, 0, 100);
  if (h.substr(257, 6) == std::string_view("ustar\0", 6)) {
    std::string prefix = field(h, 345, 155);
    if (!prefix.empty()) name = prefix + "/" + name;
  }
  auto size = number(h.substr(124, 12));
  if (!size) return bad("member " + quote(name) + " has a malformed size field");
  current_ = name;
  if (type == 'L' || type == 'K' || type == 'x' || type == 'g') {
    if (*size > kMaxMeta) return bad("member " + quote(name) + ": a long name or pax header of " + std::to_string(*size) + " bytes");
    metaType_ = type;
    metaSize_ = *size;
    metaData_.clear();
    remaining_ = (*size + kBlock - 1) / kBlock * kBlock;
    state_ = remaining_ ? State::meta : State::header;
    return remaining_ ? Status{} : meta();
  }
  if (!nextName_.empty()) name = std::move(nextName_);
  std::string link = nextLink_.empty() ? field(h, 157, 100) : std::move(nextLink_);
  if (nextSize_) size = *nextSize_;
  nextName_.clear();
  nextLink_.clear();
  nextSize_.reset();
  current_ = name;
  VMM_TRY(member(type, name, link, *size));
  remaining_ = (*size + kBlock - 1) / kBlock * kBlock;
  state_ = remaining_ ? State::data : State::header;
  return {};
}

// A GNU long name ('L'), long link target ('K') or pax header ('x', 'g') has been collected.
Status TarScan::meta() {
  state_ = State::header;
  if (metaType_ == 'L' || metaType_ == 'K') {
    std::string v = metaData_.substr(0, std::min(metaData_.find('\0'), metaData_.size()));
    (metaType_ == 'L' ? nextName_ : nextLink_) = std::move(v);
    return {};
  }
  // Records "<length> <key>=<value>\n".
  std::string_view rest = metaData_;
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    uint64_t len = 0;
    if (sp == std::string_view::npos || sp == 0 || sp > 8) return bad("a malformed pax header at byte " + std::to_string(offset_));
    for (char c : rest.substr(0, sp)) {
      if (c < '0' || c > '9') return bad("a malformed pax header at byte " + std::to_string(offset_));
      len = len * 10 + static_cast<uint64_t>(c - '0');
    }
    if (len <= sp + 1 || len > rest.size() || rest[len - 1] != '\n') return bad("a malformed pax header at byte " + std::to_string(offset_));
    std::string_view record = rest.substr(sp + 1, len - sp - 2);
    rest.remove_prefix(len);
    size_t eq = record.find('=');
    if (eq == std::string_view::npos) return bad("a malformed pax header at byte " + std::to_string(offset_));
    std::string_view key = record.substr(0, eq), value = record.substr(eq + 1);
    if (key.starts_with("GNU.sparse.")) return bad("the archive holds sparse files (pax " + std::string(key) + "), which are not unpacked");
    if (key != "path" && key != "linkpath" && key != "size") continue;
    if (metaType_ == 'g') return bad("a global pax header sets " + std::string(key) + " for every member");
    if (key == "path") nextName_ = value;
    if (key == "linkpath") nextLink_ = value;
    if (key == "size") {
      uint64_t v = 0;
      if (value.empty() || value.size() > 19) return bad("a pax size " + quote(value) + " is not a size");
      for (char c : value) {
        if (c < '0' || c > '9') return bad("a pax size " + quote(value) + " is not a size");
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      nextSize_ = v;
    }
  }
  return {};
}

Status TarScan::member(char type, std::string name, std::string link, uint64_t size) {
  std::string kind = kindOf(type);
  if (hasControl(name)) return bad("member " + quote(name) + " has a control character in its name");
  VMM_TRY(checkTarMemberName(name));
  std::string path = normalized(name);
  bool regular = type == '0' || type == '\0' || type == '7';
  if (!regular && !(type >= '1' && type <= '6'))
    return bad("member " + quote(name) + " has type '" + (type >= 0x20 && type < 0x7f ? std::string(1, type) : "\\x" + std::to_string(static_cast<unsigned char>(type))) +
               "', which is not unpacked (only files, directories, links, devices and fifos are)");
  if (!regular && size > 0) return bad(kind + " " + quote(name) + " carries data (" + std::to_string(size) + " bytes)");
  if (path.empty() && type != '5') return bad(kind + " " + quote(name) + " would replace the volume's root directory");

  // The directories on the way must not be links the archive made, nor the member itself.
  for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    if (symlinks_.count(dir)) return bad(kind + " " + quote(name) + " goes through the symbolic link " + quote(dir));
  }
  if (symlinks_.count(path)) return bad(kind + " " + quote(name) + " replaces the symbolic link " + quote(path));

  if (type == '1' || type == '2') {
    if (hasControl(link)) return bad(kind + " " + quote(name) + " has a control character in its target");
    if (link.empty()) return bad(kind + " " + quote(name) + " has no target");
  }
  if (type == '1') {
    // A hard link's target is a path in the volume that tar link()s to.
    if (link[0] == '/') return bad("hard link " + quote(name) + " has an absolute target");
    if (!checkTarMemberName(link).ok()) return bad("hard link " + quote(name) + " points outside the volume");
    std::string target = normalized(link);
    for (size_t slash = target.find('/'); slash != std::string::npos; slash = target.find('/', slash + 1)) {
      std::string dir = target.substr(0, slash);
      if (symlinks_.count(dir)) return bad("hard link " + quote(name) + ": its target " + quote(link) + " goes through the symbolic link " + quote(dir));
    }
    if (symlinks_.count(target)) symlinks_.insert(path);  // a second name of a symbolic link is one too
  }
  if (type == '2') symlinks_.insert(path);

  if (++members_ > limits_.maxFiles)
    return bad("the archive has more than " + std::to_string(limits_.maxFiles) + " members (unpack_max_files)");
  if (regular) {
    if (size > limits_.maxBytes - bytes_)
      return bad("member " + quote(name) + " (" + model::humanSize(size) + ") takes the archive past " + model::humanSize(limits_.maxBytes) +
                 " of files (unpack_max_bytes)");
    bytes_ += size;
  }
  return {};
}

}  // namespace vmm::storage
