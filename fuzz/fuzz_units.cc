// Sizes, bit rates, durations and integers against an __int128 reference: a text is accepted
// only when its exact value fits, and then with that value (never wrapped, never negative).
#include <fuzzer/FuzzedDataProvider.h>

#include "api/registry.h"
#include "base/strings.h"
#include "base/time_util.h"
#include "fuzz/fuzz_util.h"
#include "model/units.h"

using namespace vmm;
using i128 = __int128;
using u128 = unsigned __int128;

namespace {

constexpr u128 kU64Max = UINT64_MAX;
constexpr u128 kTooBig = (u128(1) << 100);  // saturation marker, above every accepted value

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

u128 digitsValue(std::string_view d) {
  u128 v = 0;
  for (char c : d) {
    v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > kTooBig) return kTooBig;
  }
  return v;
}

std::string u128Text(u128 v) {
  if (v == 0) return "0";
  std::string s;
  while (v) {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return s;
}

// The grammar of model/units.h: digits with at most one '.', then a unit, surrounded by
// blanks; the value is whole * factor + floor(factor * fraction), at most 9 decimals.
// Returns nullopt for a text that must be refused.
std::optional<u128> referenceScaled(std::string_view text, const std::map<std::string, uint64_t>& units, bool lowerUnit,
                                    bool wholeBytes) {
  text = trimmed(text);
  size_t i = 0;
  bool dot = false;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || (text[i] == '.' && !dot))) {
    if (text[i] == '.') dot = true;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string_view number = text.substr(0, i);
  std::string unit(trimmed(text.substr(i)));
  if (lowerUnit) unit = toLower(unit);
  auto u = units.find(unit);
  if (u == units.end()) return std::nullopt;
  if (wholeBytes && u->second == 1 && dot) return std::nullopt;
  auto d = number.find('.');
  std::string_view whole = number.substr(0, d);
  std::string_view frac = d == std::string_view::npos ? std::string_view() : number.substr(d + 1);
  if (whole.empty() && frac.empty()) return std::nullopt;
  if (frac.size() > 9) return std::nullopt;
  u128 w = digitsValue(whole);
  if (w > kU64Max) return std::nullopt;
  u128 total = w * u->second;
  if (!frac.empty()) {
    u128 denom = 1;
    for (size_t k = 0; k < frac.size(); ++k) denom *= 10;
    total += u128(u->second) * digitsValue(frac) / denom;
  }
  if (total > kU64Max) return std::nullopt;
  return total;
}

const std::map<std::string, uint64_t>& sizeUnits() {
  static const std::map<std::string, uint64_t> m = [] {
    constexpr uint64_t K = 1024;
    return std::map<std::string, uint64_t>{
        {"", 1}, {"b", 1}, {"B", 1}, {"bytes", 1}, {"K", K}, {"KiB", K}, {"k", K}, {"KB", 1000}, {"kB", 1000},
        {"M", K * K}, {"MiB", K * K}, {"MB", 1000000}, {"G", K * K * K}, {"GiB", K * K * K}, {"GB", 1000000000ULL},
        {"T", K * K * K * K}, {"TiB", K * K * K * K}, {"TB", 1000000000000ULL}, {"P", K * K * K * K * K},
        {"PiB", K * K * K * K * K}, {"PB", 1000000000000000ULL}};
  }();
  return m;
}

const std::map<std::string, uint64_t>& rateUnits() {
  static const std::map<std::string, uint64_t> m = {{"", 1}, {"bit", 1}, {"bps", 1}, {"kbit", 1000}, {"k", 1000},
                                                    {"mbit", 1000000}, {"m", 1000000}, {"gbit", 1000000000ULL},
                                                    {"g", 1000000000ULL}};
  return m;
}

// "500ms", "30s", "5m", "2h", "1d" or bare seconds; at most 100 years.
std::optional<i128> referenceDuration(std::string_view text) {
  if (text.empty() || text.size() > 32) return std::nullopt;
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0) return std::nullopt;
  static const std::map<std::string, i128> mult = {{"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  auto m = mult.find(std::string(text.substr(i)));
  if (m == mult.end()) return std::nullopt;
  i128 v = static_cast<i128>(digitsValue(text.substr(0, i))) * m->second;
  if (v > i128(100) * 365 * 86400 * 1000) return std::nullopt;
  return v;
}

// std::from_chars: an optional '-' (signed only), then decimal digits, nothing else.
std::optional<i128> referenceInt(std::string_view s, bool isSigned) {
  bool neg = false;
  if (isSigned && !s.empty() && s[0] == '-') {
    neg = true;
    s.remove_prefix(1);
  }
  if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  i128 v = static_cast<i128>(digitsValue(s));
  if (neg) v = -v;
  if (isSigned ? (v < INT64_MIN || v > INT64_MAX) : (v > static_cast<i128>(kU64Max))) return std::nullopt;
  return v;
}

void checkScaled(std::string_view what, std::string_view text, const Result<uint64_t>& got, std::optional<u128> want) {
  if (want) {
    FUZZ_CHECK(got.ok(), std::string(what) + " refused " + fuzz::show(text) + ", expected " + u128Text(*want));
    FUZZ_CHECK(u128(*got) == *want, std::string(what) + "(" + fuzz::show(text) + ") = " + std::to_string(*got) +
                                         ", expected " + u128Text(*want));
  } else {
    FUZZ_CHECK(!got.ok(), std::string(what) + " accepted " + fuzz::show(text) + " as " + std::to_string(*got));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256) return 0;
  std::string_view text = fuzz::bytes(data, size);

  checkScaled("parseSize", text, model::parseSize(text), referenceScaled(text, sizeUnits(), false, true));
  checkScaled("parseBitrate", text, model::parseBitrate(text), referenceScaled(text, rateUnits(), true, false));

  auto d = parseDuration(text);
  auto dr = referenceDuration(text);
  FUZZ_CHECK(d.has_value() == dr.has_value(), "parseDuration " + fuzz::show(text) + (d ? " accepted" : " refused"));
  if (d) {
    FUZZ_CHECK(d->count() >= 0, "negative duration from " + fuzz::show(text));
    FUZZ_CHECK(static_cast<i128>(d->count()) == *dr, "parseDuration " + fuzz::show(text) + " = " + std::to_string(d->count()));
    // What formatDuration writes reads back as the same duration.
    auto again = parseDuration(formatDuration(*d));
    FUZZ_CHECK(again && *again == *d, "formatDuration does not round-trip " + formatDuration(*d));
  }

  auto si = parseInt(text);
  auto sr = referenceInt(text, true);
  FUZZ_CHECK(si.has_value() == sr.has_value() && (!si || static_cast<i128>(*si) == *sr), "parseInt " + fuzz::show(text));
  auto ui = parseUint(text);
  auto ur = referenceInt(text, false);
  FUZZ_CHECK(ui.has_value() == ur.has_value() && (!ui || static_cast<i128>(*ui) == *ur), "parseUint " + fuzz::show(text));

  // durationParam: a string goes through parseDuration, a number is seconds; the result is
  // within [0, max] or refused. The text is also tried as a JSON number.
  const Millis max(366LL * 86400 * 1000);
  std::vector<nlohmann::json> params = {{{"t", std::string(text)}}};
  if (auto number = parseJson(text, 256); number.ok() && number->is_number()) params.push_back({{"t", *number}});
  for (const auto& p : params) {
    auto r = api::durationParam(p, "t", Millis(0), max);
    std::optional<i128> want;
    const auto& v = p["t"];
    if (v.is_string()) want = referenceDuration(v.get<std::string>());
    else if (v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0))
      want = static_cast<i128>(v.is_number_unsigned() ? static_cast<i128>(v.get<uint64_t>()) : v.get<int64_t>()) * 1000;
    if (want && *want > max.count()) want.reset();
    FUZZ_CHECK(r.ok() == want.has_value(), "durationParam " + dumpJson(p) + (r.ok() ? " accepted" : " refused"));
    if (r.ok()) FUZZ_CHECK(static_cast<i128>(r->count()) == *want && r->count() >= 0, "durationParam " + dumpJson(p));
  }
  return 0;
}
