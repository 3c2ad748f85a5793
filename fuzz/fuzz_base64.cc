// Base64 (guest agent payloads): decoding arbitrary text never crashes, and whatever decodes
// re-encodes to text that decodes to the same bytes; encoding any bytes decodes back exactly.
#include "base/base64.h"
#include "fuzz/fuzz_util.h"

using namespace vmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 20) return 0;
  std::string_view in = fuzz::bytes(data, size);
  std::string enc = base64Encode(in);
  FUZZ_CHECK(enc.size() == (size + 2) / 3 * 4, "encoded length");
  FUZZ_CHECK(enc.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") == std::string::npos,
             "encoded alphabet");
  auto dec = base64Decode(enc);
  FUZZ_CHECK(dec.ok() && *dec == in, "encode/decode round trip");

  auto d = base64Decode(in);
  if (d.ok()) {
    FUZZ_CHECK(d->size() <= size / 4 * 3 + 3, "decoded longer than possible");
    auto re = base64Decode(base64Encode(*d));
    FUZZ_CHECK(re.ok() && *re == *d, "decode/encode/decode round trip");
  }
  return 0;
}
