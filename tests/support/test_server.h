// In-process HTTP/1.1 server that misbehaves on purpose, for fetchq integration tests.
//
// Built as a static library; CMake snippet (paths relative to the repository root):
//
//   find_package(Threads REQUIRED)
//   add_library(fetchq_test_support STATIC
//     ${PROJECT_SOURCE_DIR}/tests/support/test_server.cpp)
//   target_include_directories(fetchq_test_support PUBLIC
//     ${PROJECT_SOURCE_DIR}/tests/support)
//   target_compile_features(fetchq_test_support PUBLIC cxx_std_20)
//   target_link_libraries(fetchq_test_support PUBLIC Threads::Threads)
//
//   find_package(GTest REQUIRED)
//   include(GoogleTest)
//   add_executable(test_server_selftest
//     ${PROJECT_SOURCE_DIR}/tests/support/test_server_selftest.cpp)
//   target_link_libraries(test_server_selftest PRIVATE
//     fetchq_test_support GTest::gtest GTest::gtest_main)
//   gtest_discover_tests(test_server_selftest)
//
// Raw POSIX sockets on purpose: general-purpose HTTP libraries "fix" Range
// responses and framing, and these tests need exact control of the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fetchq::testing {

// One request as the server saw it. Header fields are "" when absent.
struct RequestLog {
  uint64_t connection = 0;  // which connection it came on: one number per accepted connection
  std::string method;
  std::string path;    // target without the query string
  std::string target;  // full request target as sent
  std::string range;
  std::string if_range;
  std::string authorization;
  std::string user_agent;
  std::string accept_encoding;
  std::string host;
  // Every request header as received, names lower-cased, in order.
  std::vector<std::pair<std::string, std::string>> headers;
  // 0 while the response is in flight (including during a stall) and for
  // set_handler() paths. Set just before the bytes that complete the response
  // are sent (or before the socket is dropped), so a client that has seen the
  // whole response also sees the final entry.
  int status = 0;
  // Body bytes of this response (chunk framing excluded); grows while the
  // body is being sent.
  uint64_t body_bytes_sent = 0;
};

// What to serve at a path, and how to misbehave while serving it.
struct Resource {
  std::string body;                 // the bytes served
  std::string content_disposition;  // sent as Content-Disposition if non-empty
  // "auto": strong ETag derived from body ("\"<hex of std::hash>\"");
  // "": no ETag header; anything else is sent verbatim.
  std::string etag = "auto";
  std::string last_modified;  // sent as Last-Modified if non-empty
  // Anything but 200 (404, 500, 503, ...) is answered with body "error\n" and
  // Content-Length; Range and the body-shaping knobs below are then unused.
  int status = 200;
  std::string retry_after;  // Retry-After header if non-empty (for 429/503)
  // > 0: a GET that arrives while this many GETs of the path are being answered gets 503
  // (with retry_after), as servers that cap connections per client do.
  int max_in_flight = 0;
  // false: Range is ignored, always 200 with the whole body, no Accept-Ranges.
  bool honour_range = true;
  // false: If-Range is ignored, a range is answered from `body` whatever validator it names
  // (a server that breaks RFC 9110 this way splices its new version onto a client's old one).
  bool honour_if_range = true;
  // No Content-Length: body is delimited by closing the connection
  // (the response carries Connection: close).
  bool no_length = false;
  // Transfer-Encoding: chunked (takes precedence over no_length). Chunk sizes
  // cycle through 1, 10, 1000 and 16384 bytes to exercise the client decoder.
  bool chunked = false;
  // >= 0: after this many body bytes of a response, shutdown()+close() the
  // socket. Applies to the first `drop_times` GET responses whose body is
  // longer than drop_after (HEAD and responses too short to cut don't count).
  int64_t drop_after = -1;
  int drop_times = 1;
  // >= 0: Content-Length says this number, the actual bytes are `body` (or the
  // requested range of it); the connection is closed afterwards.
  int64_t lie_length = -1;
  // >= 0: a satisfiable Range request gets 206 with
  // "Content-Range: bytes W-END/SIZE" and the bytes from W (clamped to the last
  // byte), where END is the end the client asked for (or SIZE-1).
  int64_t wrong_range_start = -1;
  // A Range starting at/after the end of the body gets 416. kNone and
  // kWithContentRange send "Content-Range: bytes */SIZE" (the standard
  // behaviour); kWithoutContentRange omits it.
  enum class On416 { kNone, kWithContentRange, kWithoutContentRange };
  On416 on416 = On416::kNone;
  // Each request sees a different ETag (request counter appended), so an
  // If-Range from an earlier response never matches: 200 with the whole body.
  bool etag_changes = false;
  // > 0: throttle the body to about this rate. Stops promptly on server stop
  // or client disconnect.
  uint64_t rate_bytes_per_s = 0;
  // > 0 with a rate: the body goes out in bursts of this many bytes at full speed, each
  // followed by the pause that keeps the rate, as a server that paces in chunks does (nginx's
  // limit_rate with sendfile_max_chunk): a short look sees a burst or nothing. An answer no
  // longer than one burst goes out at once.
  uint64_t rate_burst = 0;
  // Set: a 206 answer is throttled to range_rate(first byte) instead (0: not at all), so one
  // connection of a segmented download can be made slower than the others.
  std::function<uint64_t(uint64_t first)> range_rate;
  // Non-empty: answer 302 (or `status` if it is 3xx) with Location: this value
  // and an empty body.
  std::string redirect_to;
  // >= 0: after this many body bytes (if the body is longer), send nothing
  // more and hold the connection until server stop or client close.
  int stall_after = -1;
  std::string content_encoding;  // Content-Encoding header; body sent as is
  std::vector<std::pair<std::string, std::string>> extra_headers;
};

// The value of the first header called lower_name in req.headers; "" when absent.
std::string header_of(const RequestLog& req, std::string_view lower_name);

// Serves on 127.0.0.1 with a kernel-chosen port, one thread per connection.
// Paths are matched byte-exactly (no percent-decoding), ignoring the query.
// GET and HEAD are served (Range is ignored for HEAD, as RFC 9110 says);
// other methods get 405, malformed requests 400. Request bodies announced by
// Content-Length are read and discarded.
// Keep-alive is supported whenever the response is length-delimited or
// chunked and was not cut short. All members are thread-safe.
class TestServer {
 public:
  using RawHandler = std::function<void(const RequestLog& req, int fd)>;

  TestServer();  // binds and starts accepting; throws std::system_error
  // Closes the listener and every connection and joins all threads. Never
  // waits for stalled/throttled responses or idle clients; only a RawHandler
  // that ignores socket errors could delay it.
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  uint16_t port() const;
  std::string url(std::string_view path) const;  // "http://127.0.0.1:PORT" + path
  // Adds or replaces; replacing also resets the per-path counters used by
  // drop_times and etag_changes.
  void add(std::string path, Resource r);
  // The same, sharing `r` with the caller: a large body served under many paths is not copied.
  void add(std::string path, std::shared_ptr<const Resource> r);
  // Takes precedence over add() for the same path. The handler writes the raw
  // response to fd itself; the server closes the connection afterwards.
  void set_handler(std::string path, RawHandler raw);

  std::vector<RequestLog> requests() const;  // in arrival order
  std::vector<RequestLog> requests_for(std::string_view path) const;
  // Body bytes sent so far over all responses, counted live (each piece just
  // before its send, corrected if the send fails); excludes headers and chunk
  // framing.
  uint64_t total_body_bytes_sent() const;
  void reset_log();  // clears requests(), total_body_bytes_sent() and peak_concurrent_bodies()
  // The most response bodies being sent at the same moment (over separate connections).
  int peak_concurrent_bodies() const;
  int concurrent_bodies() const;  // bodies being sent at this moment
  // > 0: all response bodies together are sent at about this rate, as over one shared link
  // that is the bottleneck (more connections get no more); each response's own
  // rate_bytes_per_s applies as well. 0: no shared limit.
  void set_link_rate(uint64_t bytes_per_s);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Deterministic pseudo-random bytes; make_body(n, s) is a prefix of
// make_body(m, s) for n < m.
std::string make_body(size_t n, uint32_t seed = 1);
// Lower-case hex SHA-256 (self-contained, no OpenSSL).
std::string sha256_hex_of(std::string_view data);
// SHA-256 of a file's contents; "" if the file cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace fetchq::testing
