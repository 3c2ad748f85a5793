#include "base/result.h"

#include <cstring>

namespace vmm {

namespace {
struct CodeInfo {
  ErrorCode code;
  std::string_view name;
  int http;
};
constexpr CodeInfo kCodes[] = {
    {ErrorCode::invalid_argument, "invalid-argument", 400},
    {ErrorCode::unauthenticated, "unauthenticated", 401},
    {ErrorCode::permission_denied, "permission-denied", 403},
    {ErrorCode::not_found, "not-found", 404},
    {ErrorCode::conflict, "conflict", 409},
    {ErrorCode::precondition_failed, "precondition-failed", 412},
    {ErrorCode::payload_too_large, "payload-too-large", 413},
    {ErrorCode::cancelled, "cancelled", 409},
    {ErrorCode::internal, "internal", 500},
    {ErrorCode::unsupported, "unsupported", 501},
    {ErrorCode::unavailable, "unavailable", 503},
    {ErrorCode::timeout, "timeout", 504},
};
}  // namespace

std::string_view errorCodeName(ErrorCode code) {
  for (const auto& c : kCodes)
    if (c.code == code) return c.name;
  return "internal";
}

std::optional<ErrorCode> errorCodeFromName(std::string_view name) {
  for (const auto& c : kCodes)
    if (c.name == name) return c.code;
  return std::nullopt;
}

int httpStatusFor(ErrorCode code) {
  for (const auto& c : kCodes)
    if (c.code == code) return c.http;
  return 500;
}

Error Error::wrap(std::string_view context) const {
  std::string m(context);
  m += ": ";
  m += message;
  return {code, std::move(m)};
}

Error systemError(std::string_view what, int err) {
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  ErrorCode code = ErrorCode::internal;
  if (err == ENOENT) code = ErrorCode::not_found;
  else if (err == EACCES || err == EPERM) code = ErrorCode::permission_denied;
  else if (err == EEXIST || err == EBUSY) code = ErrorCode::conflict;
  else if (err == ETIMEDOUT) code = ErrorCode::timeout;
  return {code, std::move(m)};
}

}  // namespace vmm
