// JSON that comes from outside vmmd: API clients, guests (agent replies, exec output), QEMU,
// child processes (lvm, nft, qemu-img), XML metadata and the state database.
//
// - parseJson() is the one way to parse such bytes. Size and nesting depth are capped while
//   parsing (a SAX handler stops at the first level too deep), so no recursive copy, dump or
//   compare of the result can overflow the stack, and errors come back as values.
// - The typed accessors read a member only when it has the expected type; they never throw
//   (json::value() and get<>() throw type_error on a mismatch, which must never reach a loop).
// - UTF-8 helpers for bytes that have to become JSON strings (guest output): nlohmann's dump()
//   throws on invalid UTF-8 unless told to replace it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vmm {

// Deep enough for every document vmm reads or writes (a domain definition with metadata is
// about 10 levels); QEMU's query-block nests one level per backing file and gets kQmpJsonDepth.
constexpr size_t kJsonMaxDepth = 64;
// Records vmmd wrote itself nest client documents (capped at kJsonMaxDepth) a few levels down.
constexpr size_t kStoredJsonDepth = 2 * kJsonMaxDepth;
// What a host tool prints as JSON (nft -j, lvm --reportformat json, qemu-img info, bridge -j).
constexpr size_t kToolJsonMaxBytes = 64 << 20;

// Parses `text` as one JSON value. Fails with invalid_argument (syntax, invalid UTF-8, numbers
// out of range, nesting deeper than `maxDepth`) or payload_too_large (more than `maxBytes`).
// `what` names the source in messages: "request body: JSON nested deeper than 64 levels".
Result<nlohmann::json> parseJson(std::string_view text, size_t maxBytes, size_t maxDepth = kJsonMaxDepth,
                                 std::string_view what = "JSON");

// Compact JSON text that never throws: invalid UTF-8 in strings becomes U+FFFD.
std::string dumpJson(const nlohmann::json& j, int indent = -1);

bool isValidUtf8(std::string_view s);
// `s` with every byte that is not part of a valid UTF-8 sequence replaced by U+FFFD.
std::string toValidUtf8(std::string_view s);

// Members of an object, by type. Null when `obj` is not an object, the key is absent or null,
// or the member has another type (integers must also fit the requested type).
const nlohmann::json* jsonMember(const nlohmann::json& obj, std::string_view key);
std::optional<std::string> jsonString(const nlohmann::json& obj, std::string_view key);
std::optional<int64_t> jsonInt(const nlohmann::json& obj, std::string_view key);
std::optional<uint64_t> jsonUint(const nlohmann::json& obj, std::string_view key);
std::optional<bool> jsonBool(const nlohmann::json& obj, std::string_view key);
// The same for a value itself.
std::optional<int64_t> jsonIntValue(const nlohmann::json& v);
std::optional<uint64_t> jsonUintValue(const nlohmann::json& v);

// Shorthands with a fallback for an absent member. A member of the wrong type also yields the
// fallback: use them only where a wrong type may be treated like an absent value.
std::string jsonStringOr(const nlohmann::json& obj, std::string_view key, std::string fallback);

// An error as every JSON answer carries it: {"code": HTTP status, "kind": "not-found", "message"}.
// The one producer of that shape (HTTP errors, operations, per-domain errors in lists, streams).
nlohmann::json errorJson(const Error& e);
int64_t jsonIntOr(const nlohmann::json& obj, std::string_view key, int64_t fallback);
bool jsonBoolOr(const nlohmann::json& obj, std::string_view key, bool fallback);

}  // namespace vmm
