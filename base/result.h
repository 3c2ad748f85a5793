// Errors as values. Every module boundary returns Result<T>; exceptions never cross one.
// An Error carries a code (mapped once to an HTTP status / JSON-RPC code by api/) and a
// message meant for the person who sent the request.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace vmm {

enum class ErrorCode {
  invalid_argument,     // 400
  unauthenticated,      // 401
  permission_denied,    // 403
  not_found,            // 404
  conflict,             // 409
  precondition_failed,  // 412 (If-Match mismatch)
  payload_too_large,    // 413
  cancelled,            // 499-ish; reported as 409 over HTTP
  internal,             // 500
  unsupported,          // 501
  unavailable,          // 503
  timeout,              // 504
};

std::string_view errorCodeName(ErrorCode code);  // "not-found"
std::optional<ErrorCode> errorCodeFromName(std::string_view name);
int httpStatusFor(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;

  // Prepends context: Error{..., "no such file"}.wrap("reading config") -> "reading config: no such file".
  Error wrap(std::string_view context) const;
};

inline Error invalidArgument(std::string msg) { return {ErrorCode::invalid_argument, std::move(msg)}; }
inline Error notFound(std::string msg) { return {ErrorCode::not_found, std::move(msg)}; }
inline Error conflict(std::string msg) { return {ErrorCode::conflict, std::move(msg)}; }
inline Error internalError(std::string msg) { return {ErrorCode::internal, std::move(msg)}; }
inline Error unsupported(std::string msg) { return {ErrorCode::unsupported, std::move(msg)}; }
inline Error unavailable(std::string msg) { return {ErrorCode::unavailable, std::move(msg)}; }
inline Error timeoutError(std::string msg) { return {ErrorCode::timeout, std::move(msg)}; }
inline Error permissionDenied(std::string msg) { return {ErrorCode::permission_denied, std::move(msg)}; }
inline Error cancelledError(std::string msg) { return {ErrorCode::cancelled, std::move(msg)}; }

// errno-based failure: "<what>: <strerror(err)>".
Error systemError(std::string_view what, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(v_); }
  Error&& takeError() { assert(!ok()); return std::get<1>(std::move(v_)); }

  T valueOr(T fallback) const& { return ok() ? value() : std::move(fallback); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)) {}  // NOLINT

  bool ok() const { return !err_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { assert(!ok()); return *err_; }
  Error&& takeError() { assert(!ok()); return std::move(*err_); }

 private:
  std::optional<Error> err_;
};

using Status = Result<void>;
inline Status okStatus() { return {}; }

}  // namespace vmm

// Propagates an error from an expression returning Result<...>.
#define VMM_TRY(expr)                                   \
  do {                                                  \
    auto vmm_try_result_ = (expr);                      \
    if (!vmm_try_result_.ok()) return vmm_try_result_.takeError(); \
  } while (0)

#define VMM_CONCAT_INNER(a, b) a##b
#define VMM_CONCAT(a, b) VMM_CONCAT_INNER(a, b)
// VMM_ASSIGN(auto x, f()); declares x from a successful Result or returns its error.
#define VMM_ASSIGN(decl, expr) VMM_ASSIGN_IMPL(VMM_CONCAT(vmm_assign_, __LINE__), decl, expr)
#define VMM_ASSIGN_IMPL(tmp, decl, expr)                 \
  auto tmp = (expr);                                     \
  if (!tmp.ok()) return tmp.takeError();                 \
  decl = std::move(tmp).value()
