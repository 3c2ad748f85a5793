// The domain.list element: what a list shows of a domain. vmmd writes it (the only producer of this
// JSON: daemon/domain_service.cc caches its text per change), libvmmclient and vmctl read it typed.
// A list may carry a subset of the fields (the call's `fields`): absent ones keep their defaults.
// Reading refuses a field of the wrong JSON type and ignores fields it does not know (a newer vmmd).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vmm::wire {

struct DomainSummary {
  std::string name{};     // the caller's name for it (plain inside its project)
  std::string project{};
  std::string uuid{};
  std::string type{};     // qemu, lxc, xen, test
  std::string state{};    // shutoff, starting, running, paused, stopping, crashed
  std::string reason{};
  std::optional<std::string> stateSince = std::nullopt;  // RFC 3339, null when never changed
  int64_t vcpus = 0;
  std::string memory{};   // "256MiB"
  bool autostart = false;
  std::map<std::string, std::string> labels{};
  uint64_t generation = 0;
  std::string title{};    // omitted from the JSON when empty
  bool pendingChanges = false;  // a definition change waits for the next start
};

// Which fields a list carries: a bit per field, in the order of kSummaryFieldNames.
enum SummaryField : uint32_t {
  kAutostart = 1u << 0, kGeneration = 1u << 1, kLabels = 1u << 2, kMemory = 1u << 3, kName = 1u << 4,
  kPendingChanges = 1u << 5, kProject = 1u << 6, kReason = 1u << 7, kState = 1u << 8, kStateSince = 1u << 9,
  kTitle = 1u << 10, kType = 1u << 11, kUuid = 1u << 12, kVcpus = 1u << 13,
};
inline constexpr uint32_t kAllSummaryFields = (1u << 14) - 1;
// The JSON keys, in bit order (which is also the keys' sorted order, as vmmd's JSON objects are).
inline constexpr std::array<std::string_view, 14> kSummaryFieldNames = {
    "autostart", "generation", "labels", "memory", "name", "pending_changes", "project",
    "reason", "state", "state_since", "title", "type", "uuid", "vcpus"};

// "name,state" -> the mask; an unknown name is an invalid argument listing the known ones.
Result<uint32_t> parseSummaryFields(std::string_view commaSeparated);

// Appends the summary's JSON object with the fields in `fields`.
void appendJson(std::string& out, const DomainSummary& s, uint32_t fields = kAllSummaryFields);
std::string toJson(const DomainSummary& s, uint32_t fields = kAllSummaryFields);

// A JSON array of summaries (domain.list's reply). `text` is padded in place for the parser.
Result<std::vector<DomainSummary>> parseDomainSummaries(std::string& text);

}  // namespace vmm::wire
