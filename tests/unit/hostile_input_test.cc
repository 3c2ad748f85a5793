// Hostile input below the transports: the capped JSON parser, UTF-8 handling, typed accessors,
// numbers compared with an __int128 reference (sizes, bit rates, durations, integer
// parameters: refused, never wrapped), and the boundaries that must not let an exception out
// (Registry::call, event-loop callbacks, pool tasks, the state store).
#include <gtest/gtest.h>
#include <unistd.h>

#include <future>
#include <random>

#include "api/registry.h"
#include "base/base64.h"
#include "base/event_loop.h"
#include "base/json_util.h"
#include "base/strings.h"
#include "base/thread_pool.h"
#include "daemon/operation_manager.h"
#include "drivers/driver.h"
#include "model/libvirt_xml.h"
#include "model/units.h"
#include "test_util.h"

using namespace vmm;
using nlohmann::json;
using i128 = __int128;

namespace {

std::string deep(size_t n, char open = '[', char close = ']') { return std::string(n, open) + std::string(n, close); }

// ---------------------------------------------------------------- parseJson

TEST(HostileJson, DepthIsCappedWhileParsing) {
  EXPECT_TRUE(parseJson(deep(64), 1 << 20).ok());
  auto r = parseJson(deep(65), 1 << 20);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(r.error().message, "JSON: nested deeper than 64 levels");
  // 100000 levels: refused at level 65, long before the closing brackets are read.
  auto t0 = SteadyClock::now();
  r = parseJson(deep(100000), 1 << 20);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "JSON: nested deeper than 64 levels");
  r = parseJson(std::string(1000000, '{'), 4 << 20, 64, "request");
  ASSERT_FALSE(r.ok());
  EXPECT_LT(SteadyClock::now() - t0, Millis(500));
  // Objects and arrays count alike.
  std::string mixed;
  for (int i = 0; i < 40; ++i) mixed += "{\"a\":[";
  mixed += "1";
  for (int i = 0; i < 40; ++i) mixed += "]}";
  EXPECT_EQ(parseJson(mixed, 1 << 20).error().message, "JSON: nested deeper than 64 levels");
  EXPECT_TRUE(parseJson(mixed, 1 << 20, 80).ok());
}

TEST(HostileJson, SyntaxSizeEncodingAndNumbers) {
  auto big = parseJson(std::string(1025, ' ') + "1", 1024, 64, "request body");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, ErrorCode::payload_too_large);
  EXPECT_EQ(big.error().message, "request body: larger than 1024 bytes");
  for (std::string bad : {std::string(""), std::string("{"), std::string("{} {}"), std::string("[1,]"),
                          std::string("\"\xff\""), std::string("\"\xc0\xaf\""), std::string("\"\xed\xa0\x80\""),
                          std::string("\"a\0b\"", 5), std::string("{\"a\":1}\0", 8), std::string("\"\\ud800\""),
                          std::string("1e400"), std::string("-1e400"), std::string("[1e99999]"), std::string("NaN")}) {
    auto r = parseJson(bad, 1 << 20);
    EXPECT_FALSE(r.ok()) << quote(bad);
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << quote(bad);
    }
  }
  EXPECT_NE(parseJson("1e400", 100).error().message.find("number overflow"), std::string::npos);
  EXPECT_NE(parseJson("\"\xff\"", 100).error().message.find("ill-formed UTF-8"), std::string::npos);
  EXPECT_EQ(parseJson(std::string("{}\0{", 4), 100).error().message, "JSON: a NUL byte at offset 2");
  // What is accepted comes back exactly.
  auto ok = parseJson(R"({"a":[1,-2,18446744073709551615,"\u00e9"],"b":null})", 1 << 20);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)["a"][2].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ((*ok)["a"][3], "\xc3\xa9");
}

// ---------------------------------------------------------------- UTF-8 and accessors

TEST(HostileJson, Utf8CheckAndRepair) {
  EXPECT_TRUE(isValidUtf8(""));
  EXPECT_TRUE(isValidUtf8("plain ascii\n"));
  EXPECT_TRUE(isValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));  // é € 😀 U+10FFFF
  for (std::string bad : {"\xff", "\x80", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                          "\xf5\x80\x80\x80", "\xc3", "\xe2\x82", "a\xf0\x9f\x98"})
    EXPECT_FALSE(isValidUtf8(bad)) << quote(bad);
  EXPECT_EQ(toValidUtf8("a\xff" "b"), "a\xef\xbf\xbd" "b");
  EXPECT_EQ(toValidUtf8("\xc3\xa9"), "\xc3\xa9");
  // Any bytes become valid UTF-8 that JSON can carry and dump.
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(rng() % 64, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    std::string text = toValidUtf8(bytes);
    ASSERT_TRUE(isValidUtf8(text));
    json j = text;
    EXPECT_NO_THROW((void)j.dump());
    if (isValidUtf8(bytes)) {
      EXPECT_EQ(text, bytes);
    }
  }
  EXPECT_EQ(dumpJson(json("\xff")), "\"\xef\xbf\xbd\"");
}

TEST(HostileJson, TypedAccessorsNeverThrow) {
  json j = {{"s", "x"}, {"i", -5}, {"u", UINT64_MAX}, {"b", true}, {"n", nullptr}, {"a", json::array({1})}, {"f", 1.5}};
  EXPECT_EQ(jsonString(j, "s"), "x");
  EXPECT_EQ(jsonString(j, "i"), std::nullopt);
  EXPECT_EQ(jsonInt(j, "i"), -5);
  EXPECT_EQ(jsonInt(j, "u"), std::nullopt);  // does not fit: refused, not wrapped
  EXPECT_EQ(jsonUint(j, "u"), UINT64_MAX);
  EXPECT_EQ(jsonUint(j, "i"), std::nullopt);
  EXPECT_EQ(jsonInt(j, "f"), std::nullopt);
  EXPECT_EQ(jsonBool(j, "b"), true);
  EXPECT_EQ(jsonBool(j, "s"), std::nullopt);
  EXPECT_EQ(jsonMember(j, "n"), nullptr);
  EXPECT_EQ(jsonMember(j, "missing"), nullptr);
  for (const json& notObject : {json(1), json("s"), json::array({1}), json()}) {
    EXPECT_EQ(jsonMember(notObject, "s"), nullptr);
    EXPECT_EQ(jsonStringOr(notObject, "s", "fb"), "fb");
    EXPECT_EQ(jsonIntOr(notObject, "i", 3), 3);
    EXPECT_FALSE(jsonBoolOr(notObject, "b", false));
  }
  EXPECT_EQ(api::str(j, "i"), "");
  EXPECT_TRUE(api::flag(j, "s", true));
}

// ---------------------------------------------------------------- numbers vs __int128

struct RefUnit {
  std::string name;
  uint64_t factor;
  bool whole;  // bytes/bits: no fraction allowed
};

// The rules of parseSize/parseBitrate, computed in 128 bits: nullopt when not a valid number
// or when it does not fit in 64 bits.
std::optional<uint64_t> refScale(const std::string& number, const RefUnit& u) {
  auto dot = number.find('.');
  std::string whole = number.substr(0, dot), frac = dot == std::string::npos ? "" : number.substr(dot + 1);
  if (whole.empty() && frac.empty()) return std::nullopt;
  if (dot != std::string::npos && u.whole) return std::nullopt;
  if (frac.size() > 9) return std::nullopt;
  if (whole.size() > 30) return std::nullopt;  // far beyond 2^64 anyway
  i128 w = 0;
  for (char c : whole) w = w * 10 + (c - '0');
  i128 total = w * u.factor;
  if (!frac.empty()) {
    i128 f = 0, denom = 1;
    for (char c : frac) f = f * 10 + (c - '0'), denom *= 10;
    total += static_cast<i128>(u.factor) * f / denom;
  }
  if (total > static_cast<i128>(UINT64_MAX)) return std::nullopt;
  return static_cast<uint64_t>(total);
}

const std::vector<RefUnit> kSizeUnits = {
    {"", 1, true}, {"B", 1, true}, {"KiB", 1024, false}, {"K", 1024, false}, {"KB", 1000, false},
    {"MiB", 1ULL << 20, false}, {"MB", 1000000, false}, {"GiB", 1ULL << 30, false}, {"GB", 1000000000ULL, false},
    {"TiB", 1ULL << 40, false}, {"TB", 1000000000000ULL, false}, {"PiB", 1ULL << 50, false}, {"PB", 1000000000000000ULL, false}};
const std::vector<RefUnit> kRateUnits = {
    {"", 1, false}, {"bit", 1, false}, {"kbit", 1000, false}, {"Mbit", 1000000, false}, {"Gbit", 1000000000ULL, false}};

void expectLikeReference(const std::string& number, const RefUnit& u, bool size) {
  std::string text = number + u.name;
  auto got = size ? model::parseSize(text) : model::parseBitrate(text);
  auto want = refScale(number, u);
  if (!size && u.factor == 1 && number.find('.') != std::string::npos) {
    // Rates in bit/s take decimals and truncate them.
    want = refScale(number, RefUnit{u.name, 1, false});
  }
  if (want) {
    ASSERT_TRUE(got.ok()) << text << ": " << got.error().message;
    EXPECT_EQ(*got, *want) << text;
  } else {
    EXPECT_FALSE(got.ok()) << text << " gave " << *got << " (wrapped)";
  }
}

TEST(HostileNumbers, SizesAndRatesMatchA128BitReference) {
  auto size = model::parseSize("18446744073709551.999KB");
  ASSERT_FALSE(size.ok()) << "wrapped to " << *size;
  EXPECT_EQ(size.error().message, "\"18446744073709551.999KB\" is too large");
  EXPECT_EQ(*model::parseSize("18446744073709551.615KB"), UINT64_MAX);
  EXPECT_FALSE(model::parseSize("18446744073709551.616KB").ok());
  EXPECT_EQ(*model::parseSize("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(model::parseSize("18446744073709551616").error().message, "\"18446744073709551616\" is too large");
  EXPECT_EQ(model::parseSize("99999999999999999999999999999999GiB").error().message,
            "\"99999999999999999999999999999999GiB\" is too large");
  EXPECT_FALSE(model::parseSize("16384PiB").ok());
  EXPECT_EQ(*model::parseSize("16383.999999999PiB"), 18446744073708425716ULL);
  for (const char* bad : {"1e400", "1e3", "-1", "-0", ".", "1..5K", "0x10", "1,5G", "inf", "16EiB", "1.5", "1.5B"})
    EXPECT_FALSE(model::parseSize(bad).ok()) << bad;
  EXPECT_FALSE(model::parseBitrate("18446744073709551.999kbit").ok());
  EXPECT_EQ(*model::parseBitrate("18446744073709551615bit"), UINT64_MAX);
  EXPECT_FALSE(model::parseBitrate("18446744073.709551616Gbit").ok());

  // Edge values around each unit's limit, then random numbers of every length.
  for (const auto& u : kSizeUnits) {
    uint64_t maxWhole = UINT64_MAX / u.factor;
    for (uint64_t w : {maxWhole - 1, maxWhole, maxWhole + 1, maxWhole * 10})
      for (std::string frac : {"", ".0", ".5", ".999999999", ".9999999999"}) expectLikeReference(std::to_string(w) + frac, u, true);
  }
  std::mt19937_64 rng(42);
  auto digits = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += static_cast<char>('0' + rng() % 10);
    return s;
  };
  for (int i = 0; i < 20000; ++i) {
    std::string number = digits(rng() % 23);
    if (rng() % 2) number += "." + digits(rng() % 11);
    if (number.empty()) continue;
    expectLikeReference(number, kSizeUnits[rng() % kSizeUnits.size()], true);
    expectLikeReference(number, kRateUnits[rng() % kRateUnits.size()], false);
  }
}

std::optional<int64_t> refDurationMs(const std::string& text) {
  const i128 kMax = static_cast<i128>(100) * 365 * 86400 * 1000;
  size_t i = 0;
  i128 v = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    v = v * 10 + (text[i] - '0');
    if (v > kMax) return std::nullopt;
    ++i;
  }
  if (i == 0 || text.size() > 32) return std::nullopt;
  std::string unit = text.substr(i);
  i128 mult = unit.empty() || unit == "s" ? 1000 : unit == "ms" ? 1 : unit == "m" ? 60000 : unit == "h" ? 3600000 : unit == "d" ? 86400000 : 0;
  if (!mult || v * mult > kMax) return std::nullopt;
  return static_cast<int64_t>(v * mult);
}

TEST(HostileNumbers, DurationsNeverWrapOrGoNegative) {
  EXPECT_EQ(parseDuration("3153600000000d"), std::nullopt);  // was -4.2e18 ms
  EXPECT_EQ(parseDuration("9223372036854775807ms"), std::nullopt);
  EXPECT_EQ(parseDuration("106751991167301d"), std::nullopt);
  EXPECT_EQ(parseDuration("36500d"), Millis(36500LL * 86400000));
  EXPECT_EQ(parseDuration("36501d"), std::nullopt);
  for (const char* bad : {"-5s", "-1", "+5s", "5 s", "1e400", "5.5s", "", "s", "5x", "0x10s"}) EXPECT_EQ(parseDuration(bad), std::nullopt) << bad;
  std::mt19937_64 rng(1);
  const char* units[] = {"", "s", "ms", "m", "h", "d", "x"};
  for (int i = 0; i < 20000; ++i) {
    std::string t;
    size_t n = 1 + rng() % 20;
    for (size_t k = 0; k < n; ++k) t += static_cast<char>('0' + rng() % 10);
    t += units[rng() % 7];
    auto got = parseDuration(t);
    auto want = refDurationMs(t);
    ASSERT_EQ(got.has_value(), want.has_value()) << t;
    if (got) {
      EXPECT_EQ(got->count(), *want) << t;
      EXPECT_GE(got->count(), 0) << t;
    }
  }
}

TEST(HostileNumbers, DurationAndIntegerParameters) {
  const Millis max(366LL * 86400 * 1000);
  auto dur = [&](json v) { return api::durationParam(json{{"t", v}}, "t", Millis(1), max); };
  EXPECT_EQ(dur(9223372036854776LL).error().message, "t: at most 366d");  // *1000 used to wrap
  EXPECT_EQ(dur(json(UINT64_MAX)).error().message, "t: at most 366d");
  EXPECT_EQ(dur(INT64_MAX).error().message, "t: at most 366d");
  EXPECT_EQ(dur(-1).error().message, "t: expected a duration such as \"30s\", \"500ms\" or \"5m\"");
  EXPECT_FALSE(dur(INT64_MIN).ok());
  EXPECT_FALSE(dur(1.5).ok());
  EXPECT_FALSE(dur("3153600000000d").ok());
  EXPECT_FALSE(dur("-1s").ok());
  EXPECT_EQ(*dur(31622400), max);
  EXPECT_EQ(dur(31622401).error().message, "t: at most 366d");
  EXPECT_EQ(*dur("366d"), max);
  EXPECT_FALSE(dur("367d").ok());
  EXPECT_EQ(*dur(nullptr), Millis(1));

  auto ip = [](json v) { return api::intParam(json{{"n", v}}, "n", 7, 1, 16 << 20); };
  EXPECT_EQ(*ip(nullptr), 7);
  EXPECT_EQ(*ip(16 << 20), 16 << 20);
  EXPECT_EQ(ip(json(UINT64_MAX)).error().message, "n: must be between 1 and 16777216");  // was a negative int64
  EXPECT_FALSE(ip(0).ok());
  EXPECT_FALSE(ip(INT64_MIN).ok());
  EXPECT_EQ(ip("5").error().message, "n: expected an integer, got string");
  EXPECT_FALSE(ip(5.0).ok());

  // parseInt / parseUint: exactly the values of their type, nothing around them.
  EXPECT_EQ(parseInt("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(parseInt("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(parseInt("9223372036854775808"), std::nullopt);
  EXPECT_EQ(parseInt("-9223372036854775809"), std::nullopt);
  EXPECT_EQ(parseUint("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parseUint("18446744073709551616"), std::nullopt);
  for (const char* bad : {"", "-", "+1", " 1", "1 ", "1e3", "0x1", "1.0"}) {
    EXPECT_EQ(parseInt(bad), std::nullopt) << bad;
    EXPECT_EQ(parseUint(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(parseUint("-1"), std::nullopt);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20000; ++i) {
    std::string t = rng() % 3 ? "" : "-";
    size_t n = 1 + rng() % 21;
    for (size_t k = 0; k < n; ++k) t += static_cast<char>('0' + rng() % 10);
    i128 v = 0;
    for (char c : t) if (c != '-') v = v * 10 + (c - '0');
    if (t[0] == '-') v = -v;
    bool fitsInt = v >= INT64_MIN && v <= INT64_MAX, fitsUint = v >= 0 && v <= static_cast<i128>(UINT64_MAX);
    auto si = parseInt(t);
    auto su = parseUint(t);
    ASSERT_EQ(si.has_value(), fitsInt) << t;
    ASSERT_EQ(su.has_value(), fitsUint && t[0] != '-') << t;
    if (si) {
      EXPECT_TRUE(static_cast<i128>(*si) == v) << t;
    }
    if (su) {
      EXPECT_TRUE(static_cast<i128>(*su) == v) << t;
    }
  }
}

// ---------------------------------------------------------------- boundaries

struct RegistryHarness {
  testutil::TempDir dir;
  std::unique_ptr<StateStore> store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  EventBus bus;
  ThreadPool pool{1, 4};
  OperationManager ops{*store, bus, pool};
  api::Registry reg{ops};
};

TEST(HostileBoundaries, RegistryCallTurnsAThrowIntoAnInternalError) {
  RegistryHarness h;
  h.reg.bind("host.info", [](const api::CallContext&, const json& p) -> Result<api::Reply> {
    return api::Reply(json{{"n", p.at("missing")}});  // json::out_of_range
  });
  h.reg.bind("domain.get", [](const api::CallContext&, const json&) -> Result<api::Reply> { throw 42; });
  h.reg.bindAsync("domain.start", [](const api::CallContext&, const json&) -> Result<api::AsyncWork> {
    throw std::runtime_error("boom");
  });
  api::CallContext ctx;
  ctx.role = api::Role::admin;
  ctx.principal = "test";
  auto r = h.reg.call(ctx, "host.info", json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::internal);
  EXPECT_NE(r.error().message.find("host.info: unexpected failure: [json.exception.out_of_range.403]"), std::string::npos)
      << r.error().message;
  r = h.reg.call(ctx, "domain.get", {{"name", "x"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "domain.get: unexpected failure");
  r = h.reg.call(ctx, "domain.start", {{"name", "x"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "domain.start: unexpected failure: boom");
  EXPECT_NE(h.reg.metricsText().find("vmm_api_errors_total{operation=\"host.info\"} 1"), std::string::npos);
}

TEST(HostileBoundaries, LoopCallbacksAndPoolTasksThatThrowDoNotEndTheProcess) {
  EventLoop loop;
  loop.runInThread();
  loop.post([] { throw std::runtime_error("posted"); });
  loop.addTimer(Millis(1), [] { throw 7; });
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::atomic<int> watched{0};
  loop.runSync([&] {
    loop.watch(fds[0], EPOLLIN, [&](uint32_t) {
      char c;
      if (read(fds[0], &c, 1) == 1) ++watched;
      throw std::logic_error("fd");
    });
  });
  ASSERT_EQ(write(fds[1], "ab", 2), 2);
  std::promise<void> after;
  loop.addTimer(Millis(20), [&] { after.set_value(); });
  ASSERT_EQ(after.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);  // the loop still runs
  EXPECT_EQ(watched.load(), 2);  // the throwing watch stays installed
  // runSync hands the exception to its caller, as an inline call would.
  EXPECT_THROW(loop.runSync([] { throw std::runtime_error("sync"); }), std::runtime_error);
  loop.runSync([&] { loop.unwatch(fds[0]); });
  loop.stop();
  loop.join();
  close(fds[0]);
  close(fds[1]);

  ThreadPool pool(1, 2);
  pool.submit([] { throw std::runtime_error("task"); });
  pool.submit([] { throw 1; });
  std::promise<void> ran;
  pool.submit([&] { ran.set_value(); });
  EXPECT_EQ(ran.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
}

TEST(HostileBoundaries, StateStoreNeverThrowsAndNeverKeepsATransactionOpen) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  json bad = {{"stdout", std::string("ok\xff\xfe\x00z", 6)}, {"nested", {{"k\xc0", "v"}}}};
  Status st;
  ASSERT_NO_THROW(st = store->put(Table::operations, "op1", bad));
  ASSERT_TRUE(st.ok()) << st.error().message;
  auto back = store->get(Table::operations, "op1");
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((**back)["stdout"], std::string("ok\xef\xbf\xbd\xef\xbf\xbd\x00z", 10));
  // A throw inside a transaction rolls it back; the next write works.
  st = store->write([](StateStore::Txn&) -> Status { throw std::runtime_error("mid-transaction"); });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("mid-transaction"), std::string::npos);
  EXPECT_TRUE(store->put(Table::meta, "after", json(1)).ok());
  // A row nested beyond what vmmd writes is reported, not followed into the stack.
  std::string sql = "sqlite3 " + (dir / "vmm.db") + " \"INSERT INTO meta VALUES('deep', '" + deep(100000) + "', 0)\"";
  if (system(sql.c_str()) == 0) {
    auto rows = store->loadAll(Table::meta);
    ASSERT_FALSE(rows.ok());
    EXPECT_NE(rows.error().message.find("nested deeper than 128 levels"), std::string::npos) << rows.error().message;
  }
}

TEST(HostileBoundaries, ExecOutputThatIsNotUtf8KeepsItsBytes) {
  drivers::ExecResult r;
  r.out = std::string("\x89PNG\r\n\x1a\n\x00\xff", 10);
  r.err = "plain\n";
  json out = json::object();
  drivers::addExecOutput(out, r);
  EXPECT_TRUE(isValidUtf8(out["stdout"].get<std::string>()));
  ASSERT_TRUE(out.contains("stdout_b64"));
  EXPECT_EQ(*base64Decode(out["stdout_b64"].get<std::string>()), r.out);
  EXPECT_EQ(out["stderr"], "plain\n");
  EXPECT_FALSE(out.contains("stderr_b64"));
  EXPECT_NO_THROW((void)out.dump());
  // Persisted in an operation and read back after a "restart".
  RegistryHarness h;
  auto op = h.ops.submit({"domain.exec", "domains/x", false, ""}, [&](OperationContext&) -> Result<json> { return out; });
  ASSERT_TRUE(op.ok());
  auto done = h.ops.wait(op->id, Deadline::after(Millis(5000)));
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->status, model::OperationStatus::succeeded);
  OperationManager again(*h.store, h.bus, h.pool);
  ASSERT_TRUE(again.load().ok());
  auto reread = again.get(op->id);
  ASSERT_TRUE(reread.ok());
  EXPECT_EQ(*base64Decode(reread->result["stdout_b64"].get<std::string>()), r.out);
  // Raw guest bytes in a result, without the helper: stored with replacement, never a crash.
  auto raw = h.ops.submit({"domain.exec", "domains/x", false, ""}, [&](OperationContext&) -> Result<json> {
    return json{{"stdout", std::string("\xff\xfe")}};
  });
  ASSERT_TRUE(raw.ok());
  auto rawDone = h.ops.wait(raw->id, Deadline::after(Millis(5000)));
  ASSERT_TRUE(rawDone.ok());
  EXPECT_EQ(rawDone->status, model::OperationStatus::succeeded);
}

TEST(HostileBoundaries, LibvirtXmlWithInvalidUtf8IsRefused) {
  auto xml = [](const std::string& description, const std::string& attr = "kvm") {
    return "<domain type='" + attr + "'><name>x</name><memory>1048576</memory><description>" + description +
           "</description></domain>";
  };
  ASSERT_TRUE(model::importLibvirtXml(xml("caf\xc3\xa9")).ok());
  for (std::string bad : {std::string("\xff\xfe"), std::string("&#xD800;"), std::string("&#xDFFF;"), std::string("a\xc0\xaf")}) {
    auto r = model::importLibvirtXml(xml(bad));
    ASSERT_FALSE(r.ok()) << quote(bad);
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(r.error().message, "libvirt XML: invalid UTF-8 in the text of <description>") << quote(bad);
  }
  auto r = model::importLibvirtXml(xml("ok", "kvm\xff"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "libvirt XML: invalid UTF-8 in an attribute of <domain>");
  // C0 controls other than tab, newline and carriage return are not XML (found by fuzzing: a
  // kept text node holding one did not survive export and import unchanged).
  for (std::string bad : {std::string("a\x18" "b"), std::string("&#24;"), std::string("&#x1;")}) {
    r = model::importLibvirtXml(xml(bad));
    ASSERT_FALSE(r.ok()) << quote(bad);
    EXPECT_EQ(r.error().message, "libvirt XML: the character U+" + std::string(bad == "&#x1;" ? "0001" : "0018") +
                                     " is not allowed in XML (in <description>)") << quote(bad);
  }
  ASSERT_TRUE(model::importLibvirtXml(xml("tab\there\nand\r\nlines")).ok());
  // The vmm metadata inside the XML is JSON with the usual caps.
  std::string meta = "<domain type='kvm'><name>x</name><memory>1048576</memory><metadata><vmm:domain "
                     "xmlns:vmm='urn:x-vmm:domain:1'>" + deep(100) + "</vmm:domain></metadata></domain>";
  r = model::importLibvirtXml(meta);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("nested deeper than 64 levels"), std::string::npos) << r.error().message;
}

}  // namespace
