#include "api/wire.h"

#include "api/registry.h"

namespace vmm::api {

std::string toText(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::string replyText(const Reply& r) { return r.raw.empty() ? toText(r.body) : r.raw; }

bool isStreamMethod(const std::string& method) {
  return method == "domain.console" || method == "volume.upload" || method == "volume.download";
}

}  // namespace vmm::api
