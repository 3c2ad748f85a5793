// StateStore::put with arbitrary JSON (FuzzedDataProvider builds it: strings and keys of any
// bytes, invalid UTF-8 included, numbers of every kind, nesting up to 300 levels). put and
// write never throw; what was put reads back as its UTF-8-repaired self when it is within the
// stored depth; a failing transaction leaves the store usable.
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <cmath>

#include "base/json_util.h"
#include "daemon/state_store.h"
#include "fuzz/fuzz_util.h"

using namespace vmm;
using json = nlohmann::json;

namespace {

json build(FuzzedDataProvider& fdp, int depth) {
  if (depth > 300 || fdp.remaining_bytes() == 0) return json();
  switch (fdp.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: return json();
    case 1: return fdp.ConsumeBool();
    case 2: return fdp.ConsumeIntegral<int64_t>();
    case 3: return fdp.ConsumeIntegral<uint64_t>();
    case 4: {
      double d = fdp.ConsumeFloatingPoint<double>();
      if (fdp.ConsumeBool()) d = fdp.ConsumeBool() ? NAN : INFINITY;
      return d;
    }
    case 5:
    case 6: return fdp.ConsumeRandomLengthString(64);
    case 7: {
      json a = json::array();
      int n = fdp.ConsumeIntegralInRange<int>(0, 4);
      for (int i = 0; i < n; ++i) a.push_back(build(fdp, depth + 1));
      return a;
    }
    case 8: {
      // A chain: deep documents without a wide tree.
      return json::array({build(fdp, depth + 1)});
    }
    default: {
      json o = json::object();
      int n = fdp.ConsumeIntegralInRange<int>(0, 4);
      for (int i = 0; i < n; ++i) o[fdp.ConsumeRandomLengthString(16)] = build(fdp, depth + 1);
      return o;
    }
  }
}

size_t depthOf(const json& j) {
  size_t d = 0;
  if (j.is_structured())
    for (const auto& v : j) d = std::max(d, depthOf(v));
  return j.is_structured() ? d + 1 : 0;
}

StateStore& store() {
  static std::unique_ptr<StateStore> s = [] {
    std::string dir = fuzz::tempDir("store");
    StoreOptions o;
    o.fullSync = false;
    auto r = StateStore::open(dir + "/vmm.db", o);
    FUZZ_CHECK(r.ok(), "open: " + (r.ok() ? "" : r.error().message));
    return std::move(*r);
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 << 10) return 0;
  FuzzedDataProvider fdp(data, size);
  const Table tables[] = {Table::domains, Table::runtime, Table::operations, Table::meta, Table::leases};
  Table t = fdp.PickValueInArray(tables);
  std::string key = fdp.ConsumeRandomLengthString(32);
  json value = build(fdp, 0);
  StateStore& s = store();

  Status st;
  try {
    st = s.put(t, key, value);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("put threw: ") + e.what());
  }
  if (st.ok()) {
    auto got = s.get(t, key);
    // The stored form: invalid UTF-8 replaced, NaN and infinities as null.
    auto expected = parseJson(dumpJson(value), 1 << 30, 1 << 20);
    FUZZ_CHECK(expected.ok(), "dumpJson wrote unparsable JSON");
    if (depthOf(value) <= kStoredJsonDepth) {
      FUZZ_CHECK(got.ok() && got->has_value(), "put then get failed: " + (got.ok() ? std::string("absent") : got.error().message));
      FUZZ_CHECK(**got == *expected, "stored value differs: " + dumpJson(**got).substr(0, 500) + " vs " + dumpJson(*expected).substr(0, 500));
    }
  }
  // A transaction that fails half-way is rolled back, and the next write works.
  try {
    st = s.write([&](StateStore::Txn& txn) -> Status {
      VMM_TRY(txn.put(Table::meta, "fuzz-a", value));
      if (fdp.ConsumeBool()) throw std::runtime_error("thrown inside a transaction");
      return invalidArgument("refused inside a transaction");
    });
  } catch (const std::exception&) {
  }
  auto after = s.put(Table::meta, "fuzz-b", json{{"ok", true}});
  FUZZ_CHECK(after.ok(), "store unusable after a failed transaction: " + (after.ok() ? "" : after.error().message));
  (void)s.remove(t, key);
  return 0;
}
