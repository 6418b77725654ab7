// Error values for expected failures (bad input, unknown job, disk, network). The one exception
// fetchq's API throws is StorageError, from the few calls that return no Result (see queue.h).
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

#include "fetchq/export.h"

namespace fetchq {

// Broad classes of failure; the control protocol maps them to its error codes.
enum class ErrorCode {
  kInvalidArgument = 1,  // the request itself is wrong (bad URL, bad option)
  kNotFound = 2,         // unknown job id
  kSchemeNotAllowed = 3, // only http and https are accepted
  kOutsideRoots = 4,     // destination not under a download root
  kWrongState = 5,       // e.g. retry of a job that did not end in error
  kStorage = 6,          // the database failed
  kIo = 7,               // the file system failed
  kBusy = 8,             // another process holds the database
  kInternal = 9,
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// A value or an Error; a minimal stand-in for C++23 std::expected.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;

inline Error make_error(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

// The database failed (busy past its timeout, an I/O error, a damaged file, a full disk),
// whatever the backend. Calls that return a Result give this Error instead of throwing; the
// DownloadQueue calls that return a plain value throw it. error().code is kStorage, kBusy or kIo.
class FETCHQ_API StorageError : public std::runtime_error {
 public:
  explicit StorageError(Error error) : std::runtime_error(error.message), error_(std::move(error)) {}
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

}  // namespace fetchq
