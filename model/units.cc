#include "model/units.h"

#include <cstdio>

#include "base/strings.h"

namespace vmm::model {

namespace {
struct Unit {
  std::string_view name;
  uint64_t factor;
};
constexpr uint64_t KiB = 1024, MiB = KiB * 1024, GiB = MiB * 1024, TiB = GiB * 1024, PiB = TiB * 1024;
constexpr Unit kSizeUnits[] = {
    {"", 1}, {"b", 1}, {"B", 1}, {"bytes", 1},
    {"K", KiB}, {"KiB", KiB}, {"k", KiB}, {"KB", 1000}, {"kB", 1000},
    {"M", MiB}, {"MiB", MiB}, {"MB", 1000000},
    {"G", GiB}, {"GiB", GiB}, {"GB", 1000000000ULL},
    {"T", TiB}, {"TiB", TiB}, {"TB", 1000000000000ULL},
    {"P", PiB}, {"PiB", PiB}, {"PB", 1000000000000000ULL},
};

// Splits "512MiB" / "1.5 GiB" into a number and a unit; decimals allowed ("1.5GiB").
bool splitNumber(std::string_view text, std::string_view& number, std::string_view& unit) {
  text = trim(text);
  size_t i = 0;
  bool dot = false;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || (text[i] == '.' && !dot))) {
    if (text[i] == '.') dot = true;
    ++i;
  }
  if (i == 0) return false;
  number = text.substr(0, i);
  unit = trim(text.substr(i));
  return true;
}

// number * factor with overflow check; number may have a fractional part.
Result<uint64_t> scale(std::string_view number, uint64_t factor, std::string_view original) {
  auto dot = number.find('.');
  std::string_view whole = number.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : number.substr(dot + 1);
  if (whole.empty() && frac.empty()) return invalidArgument("invalid number in " + quote(original));
  auto w = parseUint(whole.empty() ? "0" : whole);
  if (!w) {
    bool digits = whole.find_first_not_of("0123456789") == std::string_view::npos;
    return invalidArgument(digits ? quote(original) + " is too large" : "invalid number in " + quote(original));
  }
  if (*w != 0 && factor > UINT64_MAX / *w) return invalidArgument(quote(original) + " is too large");
  uint64_t total = *w * factor;
  if (!frac.empty()) {
    if (frac.size() > 9) return invalidArgument("too many decimals in " + quote(original));
    auto f = parseUint(frac);
    if (!f) return invalidArgument("invalid number in " + quote(original));
    uint64_t denom = 1;
    for (size_t k = 0; k < frac.size(); ++k) denom *= 10;
    // factor * f / denom; factor up to 2^50 and f < 10^9 could overflow: divide first when large
    unsigned __int128 part = static_cast<unsigned __int128>(factor) * *f / denom;
    if (part > UINT64_MAX - total) return invalidArgument(quote(original) + " is too large");
    total += static_cast<uint64_t>(part);
  }
  return total;
}
}  // namespace

Result<uint64_t> parseSize(std::string_view text) {
  std::string_view number, unit;
  if (!splitNumber(text, number, unit))
    return invalidArgument("invalid size " + quote(text) + " (expected e.g. \"512MiB\", \"20GiB\" or a byte count)");
  for (const auto& u : kSizeUnits) {
    if (u.name == unit) {
      if (u.factor == 1 && number.find('.') != std::string_view::npos)
        return invalidArgument("a size in bytes must be a whole number: " + quote(text));
      return scale(number, u.factor, text);
    }
  }
  return invalidArgument("unknown size unit " + quote(unit) + " in " + quote(text) +
                         " (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)");
}

std::string formatSize(uint64_t bytes) {
  static const std::pair<uint64_t, const char*> units[] = {
      {PiB, "PiB"}, {TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}};
  if (bytes == 0) return "0";
  for (const auto& [f, n] : units)
    if (bytes % f == 0) return std::to_string(bytes / f) + n;
  return std::to_string(bytes);
}

std::string humanSize(uint64_t bytes) {
  static const char* names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int i = 0;
  while (v >= 1024 && i < 5) {
    v /= 1024;
    ++i;
  }
  char buf[32];
  if (i == 0) std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(bytes));
  else if (v == static_cast<double>(static_cast<uint64_t>(v))) std::snprintf(buf, sizeof buf, "%.0f%s", v, names[i]);
  else std::snprintf(buf, sizeof buf, "%.1f%s", v, names[i]);
  return buf;
}

Result<uint64_t> parseBitrate(std::string_view text) {
  std::string_view number, unit;
  if (!splitNumber(text, number, unit))
    return invalidArgument("invalid bit rate " + quote(text) + " (expected e.g. \"10Mbit\")");
  std::string u = toLower(unit);
  uint64_t factor;
  if (u == "" || u == "bit" || u == "bps") factor = 1;
  else if (u == "kbit" || u == "k") factor = 1000;
  else if (u == "mbit" || u == "m") factor = 1000000;
  else if (u == "gbit" || u == "g") factor = 1000000000ULL;
  else return invalidArgument("unknown rate unit " + quote(unit) + " in " + quote(text) + " (use bit, kbit, Mbit, Gbit)");
  return scale(number, factor, text);
}

std::string formatBitrate(uint64_t bps) {
  if (bps == 0) return "0bit";
  if (bps % 1000000000ULL == 0) return std::to_string(bps / 1000000000ULL) + "Gbit";
  if (bps % 1000000 == 0) return std::to_string(bps / 1000000) + "Mbit";
  if (bps % 1000 == 0) return std::to_string(bps / 1000) + "kbit";
  return std::to_string(bps) + "bit";
}

}  // namespace vmm::model
