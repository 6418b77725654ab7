// Fetcher: HTTP GETs on one thread through libcurl's multi interface, keyed by an opaque handle.
//
// It knows URLs, request headers, credentials, byte ranges, redirects, timeouts and what a
// libcurl error means; nothing of jobs, files or names. What the bytes are for is decided a
// layer above (transfer::Engine), by the FetchClient it calls, always on the fetcher's thread.
// start(), cancel() and where() are for that thread only (from a client callback); wakeup()
// may be called from any thread.
#pragma once

#include <curl/curl.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "transfer/transfer.h"

namespace fetchq::transfer {

using FetchId = uint64_t;  // 0 is never a fetch

// Bytes [start, end) of the resource; end -1: to its end.
struct ByteRange {
  int64_t start = 0;
  int64_t end = -1;
};

struct FetchRequest {
  std::string url;                            // without user info (see username/password)
  std::vector<std::string> headers{};         // extra request header lines, e.g. "If-Range: x"
  std::optional<std::string> user_agent{};    // nullopt: "fetchq/VERSION"
  std::optional<ByteRange> range{};           // sent as Range
  std::optional<std::string> access_token{};  // Bearer, to the original host only
  std::string username{};                     // with password: basic auth, original host only
  std::optional<std::string> password{};
  // HTTP/1.1 only: segments of one file must each have a connection of their own, which HTTP/2
  // would multiplex onto one.
  bool http1 = false;
  // Fetches of one group (the segments of one job) share the group's rate limit
  // (set_group_rate_limit); 0: no group.
  int64_t rate_group = 0;
};

// The head of the final response (after redirects), as the body is about to come.
struct FetchResponse {
  long code = 0;
  int64_t content_length = -1;                        // -1: not announced
  const std::map<std::string, std::string>* headers;  // lower-case names
  std::string header(const char* name) const {
    auto it = headers->find(name);
    return it == headers->end() ? std::string() : it->second;
  }
};

struct FetcherOptions {
  std::chrono::milliseconds connect_timeout{30000};
  std::chrono::milliseconds stall_timeout{30000};
  int max_redirects = 10;
  bool block_private_addresses = false;
  // A PEM file of CA certificates trusted instead of the system's (CURLOPT_CAINFO). Peer and
  // host verification stay on whatever it holds.
  std::string ca_cert{};
  // Proxy for every fetch (CURLOPT_PROXY); empty: libcurl's own choice from http_proxy,
  // https_proxy, ALL_PROXY and no_proxy. May hold credentials: never put in a message.
  std::string proxy{};
};

// True for addresses block_private_addresses refuses.
bool is_private_address(const ::sockaddr* addr);

// What the fetcher reports to. Callbacks run on the fetcher thread and must not block long.
class FetchClient {
 public:
  virtual ~FetchClient() = default;
  // Once per loop round, first: take new work and stops. False ends the loop (the thread).
  virtual bool on_wake() = 0;
  // Once per loop round, last: time-driven work (at least every 100 ms while fetches run).
  virtual void on_tick() = 0;
  // The final response's head, before its first body byte (at the end for an empty body).
  // False aborts the fetch (on_done follows, with a failure the client may ignore).
  virtual bool on_response(FetchId id, const FetchResponse& response) = 0;
  // Body bytes. False aborts the fetch.
  virtual bool on_data(FetchId id, const char* data, size_t len) = 0;
  // The fetch ended by itself (never after cancel()). failure: why it did not succeed, named by
  // the fetch (network, HTTP head, libcurl); none when the body arrived whole. where() still
  // works during this call; the handle is gone after it.
  virtual void on_done(FetchId id, std::optional<Failure> failure) = 0;
};

class Fetcher {
 public:
  Fetcher(FetcherOptions options, FetchClient* client);
  ~Fetcher();  // joins the thread (see start_thread); fetches left are dropped without a report
  Fetcher(const Fetcher&) = delete;
  Fetcher& operator=(const Fetcher&) = delete;

  // Starts the loop thread; call once the client is ready for callbacks.
  void start_thread();
  // Wakes the loop so the client's on_wake runs soon. Any thread.
  void wakeup();
  // Waits for the loop to end (after on_wake returned false).
  void join();

  // Fetcher thread only.
  FetchId start(FetchRequest request);
  // Ends a fetch without on_done; unknown ids are ignored.
  void cancel(FetchId id);
  // "GET <url>", plus where redirects led, for messages (never holds a password).
  std::string where(FetchId id) const;

  // Bandwidth, fetcher thread only (or before start_thread): bytes per second over every fetch
  // together, and over the fetches of one group; 0 lifts a limit. Both apply to a fetch of a
  // limited group. A fetch out of tokens is paused (never the thread) until they refill.
  void set_rate_limit(int64_t bytes_per_second);
  void set_group_rate_limit(int64_t group, int64_t bytes_per_second);

 private:
  struct Fetch;
  // A token bucket: `tokens` bytes may be received now. Receiving is allowed while tokens are
  // above zero and may overdraw them by one chunk, which later refills pay back, so over any
  // long window the bytes received are the rate times the window (plus one burst).
  struct Bucket {
    int64_t rate = 0;  // bytes per second; 0: unlimited
    double tokens = 0;
    std::chrono::steady_clock::time_point at{};  // when tokens were last refilled
    void refill(std::chrono::steady_clock::time_point now);
    void set(int64_t bytes_per_second, std::chrono::steady_clock::time_point now);
  };
  // The buckets a fetch draws from, and whether all have tokens.
  bool may_receive(Fetch& f, std::chrono::steady_clock::time_point now);
  void take(Fetch& f, size_t len);
  // Resumes paused fetches whose buckets refilled, the least served group first; the
  // milliseconds until the next paused fetch could resume (-1: none paused).
  int resume_paused();
  // The group a fetch is counted in for fairness: its rate group, or the fetch alone.
  static int64_t share_key(const Fetch& f);
  void run();
  void done(FetchId id, CURLcode code);

  static curl_socket_t open_socket_cb(void* ud, curlsocktype, curl_sockaddr* a) noexcept;
  static size_t header_cb(char* data, size_t size, size_t n, void* ud) noexcept;
  static size_t write_cb(char* data, size_t size, size_t n, void* ud) noexcept;

  FetcherOptions options_;
  FetchClient* client_;
  CURLM* multi_ = nullptr;
  FetchId next_id_ = 1;
  std::map<FetchId, std::unique_ptr<Fetch>> fetches_;  // fetcher thread only
  Bucket global_;                                      // fetcher thread only, as below
  std::map<int64_t, Bucket> groups_;                   // limited groups only
  FetchId resume_after_ = 0;                           // the fetch resume_paused resumed last
  // Bytes each group with fetches has received (share_key): the group that had least goes first
  // when tokens come back, so a shared limit is split evenly between jobs, not connections, and
  // a job held below its share by its own limit leaves the rest to the others.
  std::map<int64_t, double> served_;
  std::thread thread_;
};

}  // namespace fetchq::transfer
