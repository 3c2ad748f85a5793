// Downloads an http(s) URL into a file, with an overall deadline, a size limit, progress and
// cancellation. The file appears complete or not at all.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/result.h"
#include "base/time_util.h"

namespace vmm {

struct FetchOptions {
  uint64_t maxBytes = 64ULL << 30;
  std::string caFile;  // PEM CA certificates that https servers are verified against; "" = the system's
  Deadline deadline = Deadline::after(Millis(3600 * 1000));
  std::function<void(uint64_t done, uint64_t total)> progress;
  std::function<bool()> cancelled;
};

Status fetchUrl(const std::string& url, const std::string& path, const FetchOptions& options);

}  // namespace vmm
