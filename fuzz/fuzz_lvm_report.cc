// lvm2's JSON report (what `lvs/vgs/pvs --reportformat json` print, read by the logical pool):
// storage::parseLvmReport and the helpers after it never crash or throw; stripTrailingCommas
// keeps valid JSON valid and changes nothing inside strings.
#include "base/json_util.h"
#include "fuzz/fuzz_util.h"
#include "storage/logical/lvm_command.h"

using namespace vmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 << 10) return 0;
  std::string_view text = fuzz::bytes(data, size);
  auto report = storage::parseLvmReport(text);
  for (const auto& row : report.rows) {
    for (const auto& [k, v] : row) {
      (void)storage::lvmNumber(row, k);
      (void)storage::lvmField(row, k);
    }
    (void)storage::lvmNumber(row, "lv_size");
  }
  // A document that parses as it is parses the same after the comma fix.
  if (auto doc = parseJson(text, 1 << 20); doc.ok()) {
    auto fixed = parseJson(storage::stripTrailingCommas(text), 1 << 20);
    FUZZ_CHECK(fixed.ok() && *fixed == *doc, "stripTrailingCommas changed valid JSON");
  }
  return 0;
}
