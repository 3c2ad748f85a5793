#include "api/types/domain_summary.h"

#include "api/types/json_text.h"
#include "base/strings.h"

namespace vmm::wire {

Result<uint32_t> parseSummaryFields(std::string_view commaSeparated) {
  uint32_t mask = 0;
  for (const auto& name : split(commaSeparated, ',', true)) {
    std::string_view want = trim(name);
    uint32_t bit = 0;
    for (size_t i = 0; i < kSummaryFieldNames.size(); ++i)
      if (kSummaryFieldNames[i] == want) bit = 1u << i;
    if (!bit) {
      std::string known;
      for (auto k : kSummaryFieldNames) known += (known.empty() ? "" : ", ") + std::string(k);
      return invalidArgument("fields: unknown field " + quote(std::string(want)) + " (known: " + known + ")");
    }
    mask |= bit;
  }
  if (!mask) return invalidArgument("fields: name at least one field");
  return mask;
}

void appendJson(std::string& out, const DomainSummary& s, uint32_t fields) {
  out += '{';
  bool first = true;
  auto key = [&](uint32_t bit, std::string_view k) {
    if (!(fields & bit)) return false;
    if (!first) out += ',';
    first = false;
    out += '"';
    out += k;
    out += "\":";
    return true;
  };
  auto str = [&](uint32_t bit, std::string_view k, const std::string& v) {
    if (key(bit, k)) appendJsonString(out, v);
  };
  auto boolean = [&](uint32_t bit, std::string_view k, bool v) {
    if (key(bit, k)) out += v ? "true" : "false";
  };
  // In the keys' sorted order, as nlohmann's objects come out everywhere else.
  boolean(kAutostart, "autostart", s.autostart);
  if (key(kGeneration, "generation")) out += std::to_string(s.generation);
  if (key(kLabels, "labels")) {
    out += '{';
    bool firstLabel = true;
    for (const auto& [k, v] : s.labels) {
      if (!firstLabel) out += ',';
      firstLabel = false;
      appendJsonString(out, k);
      out += ':';
      appendJsonString(out, v);
    }
    out += '}';
  }
  str(kMemory, "memory", s.memory);
  str(kName, "name", s.name);
  boolean(kPendingChanges, "pending_changes", s.pendingChanges);
  str(kProject, "project", s.project);
  str(kReason, "reason", s.reason);
  str(kState, "state", s.state);
  if (key(kStateSince, "state_since")) {
    if (s.stateSince) appendJsonString(out, *s.stateSince);
    else out += "null";
  }
  if (!s.title.empty()) str(kTitle, "title", s.title);
  str(kType, "type", s.type);
  str(kUuid, "uuid", s.uuid);
  if (key(kVcpus, "vcpus")) out += std::to_string(s.vcpus);
  out += '}';
}

std::string toJson(const DomainSummary& s, uint32_t fields) {
  std::string out;
  appendJson(out, s, fields);
  return out;
}

namespace {

Status readSummary(JsonValue v, DomainSummary& s, const std::string& where) {
  simdjson::dom::object obj;
  if (v.get_object().get(obj)) return internalError("vmmd sent unexpected JSON at " + where + ": expected an object");
  for (auto field : obj) {
    // Named copies: clang 14 does not let a lambda capture a structured binding.
    std::string_view key = field.key;
    JsonValue value = field.value;
    auto at = [&] { return where + "." + std::string(key); };
    if (key == "name") VMM_TRY(readString(value, s.name, at()));
    else if (key == "project") VMM_TRY(readString(value, s.project, at()));
    else if (key == "uuid") VMM_TRY(readString(value, s.uuid, at()));
    else if (key == "type") VMM_TRY(readString(value, s.type, at()));
    else if (key == "state") VMM_TRY(readString(value, s.state, at()));
    else if (key == "reason") VMM_TRY(readString(value, s.reason, at()));
    else if (key == "state_since") VMM_TRY(readOptionalString(value, s.stateSince, at()));
    else if (key == "vcpus") VMM_TRY(readInt(value, s.vcpus, at()));
    else if (key == "memory") VMM_TRY(readString(value, s.memory, at()));
    else if (key == "autostart") VMM_TRY(readBool(value, s.autostart, at()));
    else if (key == "labels") VMM_TRY(readStringMap(value, s.labels, at()));
    else if (key == "generation") VMM_TRY(readUint(value, s.generation, at()));
    else if (key == "title") VMM_TRY(readString(value, s.title, at()));
    else if (key == "pending_changes") VMM_TRY(readBool(value, s.pendingChanges, at()));
    // Anything else is a field of a newer vmmd: skipped.
  }
  return {};
}

}  // namespace

Result<std::vector<DomainSummary>> parseDomainSummaries(std::string& text) {
  VMM_ASSIGN(auto root, parseJson(text));
  simdjson::dom::array list;
  if (root.get_array().get(list)) return internalError("vmmd sent unexpected JSON: expected a list of domains");
  std::vector<DomainSummary> out;
  out.reserve(list.size());
  for (auto element : list) {
    std::string where = "[" + std::to_string(out.size()) + "]";
    VMM_TRY(readSummary(element, out.emplace_back(), where));
  }
  return out;
}

}  // namespace vmm::wire
