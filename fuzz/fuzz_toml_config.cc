// vmmd's configuration file: parseTomlLite, then applyConfigFile on the same text. Never a
// crash or an exception; a document with any key the configuration does not know is refused;
// what is accepted is within its documented range.
#include <fcntl.h>
#include <unistd.h>

#include <set>

#include "base/fs.h"
#include "base/json_util.h"
#include "base/toml_lite.h"
#include "daemon/config.h"
#include "fuzz/fuzz_util.h"

using namespace vmm;
using json = nlohmann::json;

namespace {

// Every key the configuration reads, as "table.key" (top-level keys without a table).
const std::set<std::string>& knownKeys() {
  static const std::set<std::string> k = {
      "state_dir", "run_dir", "log_level", "log_format", "log_file", "drivers", "sync_full",
      "rpc.socket", "rpc.ro_socket", "rpc.group", "rpc.max_request_bytes",
      "http.listen", "http.tls_cert", "http.tls_key", "http.threads",
      "operations.keep", "operations.max_age",
      "storage.default_pool", "storage.io_timeout",
      "network.default_network",
      "images.pool", "images.customize_helper", "images.guestfs_env", "images.ca_file",
      "capacity.memory", "capacity.vcpus",
      "events.queue",
      "domains.job_wait", "domains.shutdown_timeout"};
  return k;
}
const std::set<std::string> kTables = {"rpc", "http", "operations", "storage", "network", "images", "capacity", "events", "domains"};

bool onlyKnownKeys(const json& doc) {
  for (const auto& [k, v] : doc.items()) {
    if (kTables.count(k)) {
      if (!v.is_object()) return false;
      for (const auto& [k2, v2] : v.items())
        if (!knownKeys().count(k + "." + k2)) return false;
    } else if (!knownKeys().count(k)) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 << 10) return 0;
  std::string_view text = fuzz::bytes(data, size);
  auto doc = parseTomlLite(text);
  if (doc.ok()) {
    FUZZ_CHECK(doc->is_object(), "not an object");
    // The document must be usable: dumped, compared, copied.
    std::string dumped = dumpJson(*doc);
    auto again = parseJson(dumped, 1 << 30, 1 << 20);
    FUZZ_CHECK(again.ok(), "TOML result does not re-parse: " + (again.ok() ? std::string() : again.error().message));
  }

  static std::string file = fuzz::tempDir("config") + "/vmm.toml";
  {
    fs::UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    FUZZ_CHECK(fd.valid() && ::write(fd.get(), data, size) == static_cast<ssize_t>(size), "write " + file);
  }
  Config c = defaultConfig();
  auto st = applyConfigFile(c, file);
  if (st.ok()) {
    FUZZ_CHECK(doc.ok(), "config accepted what parseTomlLite refused");
    FUZZ_CHECK(onlyKnownKeys(*doc), "config accepted an unknown key: " + dumpJson(*doc).substr(0, 300));
    FUZZ_CHECK(c.httpThreads >= 2 && c.httpThreads <= 1024, "threads");
    FUZZ_CHECK(c.maxRequestBytes >= 1024 && c.maxRequestBytes <= (1u << 30), "max_request_bytes");
    FUZZ_CHECK(c.operationsKeep >= 10 && c.operationsKeep <= 1000000, "keep");
    FUZZ_CHECK(c.eventQueue >= 16 && c.eventQueue <= (1u << 20), "queue");
    FUZZ_CHECK(c.capacityVcpus >= 0 && c.capacityVcpus <= (1 << 20), "vcpus");
    for (Millis d : {c.operationsMaxAge, c.storageIoTimeout, c.jobWait, c.shutdownTimeout})
      FUZZ_CHECK(d.count() >= 0, "negative duration");
  } else if (doc.ok() && !onlyKnownKeys(*doc)) {
    // The refusal names the unknown key or a wrongly typed known one.
    FUZZ_CHECK(!st.error().message.empty(), "empty message");
  }
  return 0;
}
