// libvirt domain XML import and export. For any input: no crash, the size and depth limits
// hold; for an accepted document: the export is valid UTF-8, re-imports, and
// import -> export -> import -> export is stable (the second export equals the first).
#include "base/json_util.h"
#include "fuzz/fuzz_util.h"
#include "model/domain.h"
#include "model/libvirt_xml.h"

using namespace vmm;
using namespace vmm::model;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > LibvirtXmlLimits::kMaxBytes + 16) return 0;
  std::string_view xml = fuzz::bytes(data, size);
  auto imported = importLibvirtXml(xml);
  if (!imported.ok()) return 0;
  FUZZ_CHECK(size <= LibvirtXmlLimits::kMaxBytes, "a document over the size limit was accepted");
  const Domain& d = imported->domain;
  // What the API returns for it: the domain as JSON, and the warnings.
  (void)formatDomain(d).dump();
  for (const auto& w : imported->warnings) FUZZ_CHECK(isValidUtf8(w), "warning is not UTF-8");

  auto x1 = exportLibvirtXml(d, true);
  FUZZ_CHECK(x1.ok(), "export of an imported domain failed: " + (x1.ok() ? "" : x1.error().message));
  FUZZ_CHECK(isValidUtf8(*x1), "export is not valid UTF-8");
  auto again = importLibvirtXml(*x1);
  FUZZ_CHECK(again.ok(), "re-import of the export failed: " + (again.ok() ? "" : again.error().message) + "\n" + x1->substr(0, 3000));
  auto x2 = exportLibvirtXml(again->domain, true);
  FUZZ_CHECK(x2.ok() && *x2 == *x1, "import->export is not stable " + (x2.ok() ? fuzz::firstDifference(*x1, *x2) : x2.error().message));
  json f1 = formatDomain(again->domain, false), f0 = formatDomain(d, false);
  FUZZ_CHECK(f0 == f1, "the domain changed through export and import " + fuzz::firstDifference(dumpJson(f0), dumpJson(f1)));
  return 0;
}
