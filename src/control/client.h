// Client: one connection to fetchqd's control socket, for the fetchq command line.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fetchq/queue.h"
#include "fetchq/result.h"

namespace fetchq::control {

// SPEC's order: $FETCHQ_SOCKET, /run/fetchq/fetchqd.sock when it exists, else
// $XDG_RUNTIME_DIR/fetchq/fetchqd.sock.
std::string default_socket_path();

// stats as fetchqd answers it: the queue's counts and the daemon's own version.
struct DaemonStats {
  QueueStats queue;
  std::string version;
};
nlohmann::json to_json_value(const DaemonStats& stats);  // the answer's JSON, as sent
DaemonStats daemon_stats_from_json(const nlohmann::json& in);

// The first answer of subscribe.
struct Subscription {
  int64_t since = 0;      // events after this seq follow
  int64_t last_seq = 0;   // the newest event when it subscribed
  int64_t first_seq = 0;  // the oldest event still kept
};

// One message read after subscribe: the subscription's answer, or an event.
struct SubscriptionMessage {
  std::optional<Subscription> subscribed;
  std::optional<Event> event;
};

// One connection to fetchqd; not thread-safe. The typed calls return the public types; an
// answer that does not have the expected shape is an error (kIo) naming the method.
class Client {
 public:
  // Fails (kBusy is never used here) with a message naming the path when nothing answers.
  static Result<Client> connect(const std::string& path);
  Client(Client&& other) noexcept;
  Client& operator=(Client&&) = delete;
  ~Client();

  // Sends one request and reads its answer. A JSON-RPC error comes back as an Error whose code
  // is the JSON-RPC code (negative) or the daemon's own (>= 1).
  Result<nlohmann::json> call(const std::string& method, nlohmann::json params);
  // Sends a request without reading the answer (for subscribe); then read_message() lines.
  Status send(const std::string& method, nlohmann::json params);
  // Next line from the daemon; std::nullopt at end of stream. timeout_ms < 0 waits forever.
  Result<std::optional<nlohmann::json>> read_message(int timeout_ms = -1);
  // The result of an answer read with read_message(), or its error.
  static Result<nlohmann::json> answer_of(nlohmann::json& message);
  int fd() const { return fd_; }

  // ---- Typed calls, one request each.
  Result<Job> download(const DownloadRequest& request);
  Result<std::vector<Job>> download_batch(const std::vector<DownloadRequest>& requests);
  // Jobs as JSON objects as the user wrote them (fetchq add -i): the daemon checks every field,
  // so its messages reach the user unchanged. `download_batch_answer` reads the answer, which
  // lets a caller keep two batches in flight (answers come in order).
  Status send_download_batch(nlohmann::json jobs);
  Result<std::vector<Job>> download_batch_answer();
  Result<Job> download_json(nlohmann::json job);
  // One page (filter.limit jobs at most; -1: all).
  Result<std::vector<Job>> list_jobs(const ListFilter& filter);
  // Not found is an Error with code kNotFound, as the daemon answers it.
  Result<Job> id_to_job(int64_t id);
  Result<Job> cancel_job(int64_t id);
  Result<Job> pause_job(int64_t id);
  Result<Job> resume_job(int64_t id);
  Result<Job> retry_job(int64_t id);
  Result<Job> set_url(int64_t id, const std::string& url);
  Result<int64_t> cancel_all_jobs();
  Result<int64_t> prune_jobs(const PruneFilter& filter = {});
  // True when every job of `ids` (all when empty) ended; false when `timeout_s` passed first.
  Result<bool> join(const std::vector<int64_t>& ids, std::optional<double> timeout_s);
  Result<DaemonStats> stats();
  // Subscribes (since < 0: from now on); then call next_event() for the answer and events.
  Status subscribe(int64_t since);
  Result<SubscriptionMessage> next_event();

 private:
  explicit Client(int fd) : fd_(fd) {}
  int fd_ = -1;
  int64_t next_id_ = 1;
  std::string buf_;
};

}  // namespace fetchq::control
