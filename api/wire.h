// Shared by both transports: JSON text and error bodies.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/fs.h"
#include "base/result.h"

namespace vmm::api {

// JSON text; invalid UTF-8 in strings (guest output, file names) is replaced, never fatal.
std::string toText(const nlohmann::json& j);
// The JSON text of a successful reply (its raw text when it has one).
struct Reply;
std::string replyText(const Reply& r);

// A call that turns into a byte stream (console, volume upload and download): the reply's
// result, then the connection carries the bytes of `fd`.
struct StreamStart {
  nlohmann::json result;
  fs::UniqueFd fd;
};
bool isStreamMethod(const std::string& method);

// JSON-RPC protocol error codes.
constexpr int kRpcParseError = -32700;
constexpr int kRpcInvalidRequest = -32600;
constexpr int kRpcMethodNotFound = -32601;

}  // namespace vmm::api
