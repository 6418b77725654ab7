// Backend: what the Python binding asks of a queue, in-process or behind fetchqd's socket.
//
// Both backends report every failure as a Result (a local queue's StorageError included) and
// hand job events to the EventChannel they were given, from a thread of their own that never
// takes the GIL. Every method may block (SQLite, a round trip to fetchqd): the binding calls
// them with the GIL released. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "event_channel.h"
#include "fetchq/queue.h"
#include "fetchq/result.h"

namespace fetchq::python {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Result<Job> download(const DownloadRequest& request) = 0;
  virtual Result<std::vector<Job>> list_jobs() = 0;
  virtual Result<std::optional<Job>> id_to_job(int64_t id) = 0;  // nullopt: no such job
  virtual Result<Job> cancel_job(int64_t id) = 0;
  virtual Result<Job> pause_job(int64_t id) = 0;
  virtual Result<Job> resume_job(int64_t id) = 0;
  virtual Result<Job> retry_job(int64_t id) = 0;
  virtual Result<int64_t> cancel_all_jobs() = 0;
  virtual Result<int64_t> prune_jobs() = 0;
  // True once none of `ids` (all jobs when empty) is waiting or running; false on timeout.
  virtual Result<bool> join(std::optional<std::chrono::milliseconds> timeout,
                            const std::vector<int64_t>& ids) = 0;
  // Stops delivering events. A local queue also stops its transfers, checkpointed; fetchqd's go
  // on. Idempotent.
  virtual void shutdown() = 0;
};

// The queue in this process, on the SQLite file options.db_path; its callbacks are replaced by
// pushes into `events`.
Result<std::unique_ptr<Backend>> open_local(QueueOptions options,
                                            std::shared_ptr<EventChannel> events);

// A client of the fetchqd listening on `socket_path`: one connection for the calls and one
// subscribed to the event log, whose download events reach `events` with the job as fetchqd
// has it. Subscribed before this returns, so no event of a job submitted afterwards is missed.
Result<std::unique_ptr<Backend>> connect_remote(const std::string& socket_path,
                                                std::shared_ptr<EventChannel> events);

}  // namespace fetchq::python
