// Messages to the queue's loop thread, and what the loop knows of a job it handed to the engine.
//
// Private to src/queue. The transfer thread and the settle thread only build and post messages;
// Active records are read and written by the loop thread alone.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "fetchq/job.h"
#include "transfer/transfer.h"
#include "util/clock.h"

namespace fetchq::queue {

struct StartedMsg {
  int64_t id;
  int attempt;
  transfer::Started s;
  util::SteadyClock::time_point at = util::SteadyClock::now();  // when the answer came
};
struct ProgressMsg {
  int64_t id;
  int attempt;
  int64_t bytes, total;
  std::vector<transfer::SegmentSpan> segments;  // what each segment wrote; empty: one connection
};
struct CheckpointMsg {
  int64_t id;
  int attempt;
  std::shared_ptr<transfer::PartFile> file;
  int64_t bytes;
  std::vector<transfer::SegmentSpan> segments;  // a segmented download's map; empty otherwise
  bool returned = false;                        // back from the checkpoint thread
  bool synced = false;                          // and the .part was synced there
};
struct FinishedMsg {
  int64_t id;
  int attempt;
  transfer::Result r;
  bool settled = false;    // back from the settle thread: renamed, or failure set in r
  bool renamed = false;    // synced, its size committed and renamed into place (Settler)
  bool recovered = false;  // found whole on disk after a crash between rename and commit
};
struct SourceDroppedMsg {
  int64_t id;
  int attempt;
  bool own;  // the job's own URL, else the mirror `url`
  std::string url, reason;
};
// A fresh .part to record (transfer::Observer::on_part_created); always answered to the engine.
struct PartCreatedMsg {
  int64_t id;
  int attempt;
  std::string path;
  transfer::PartIdentity identity;
};
// The attempt no longer transfers (transfer::Observer::on_transfer_over): its slot is free.
struct TransferOverMsg {
  int64_t id;
  int attempt;
};
using Msg = std::variant<StartedMsg, ProgressMsg, CheckpointMsg, FinishedMsg, SourceDroppedMsg,
                         PartCreatedMsg, TransferOverMsg>;

enum class Stop { kNone, kCancel, kPause, kShutdown };

// A job handed to the engine and not yet settled. Loop thread only.
struct Active {
  int attempt = 0;
  std::string source;
  std::string download_path;
  Stop stop = Stop::kNone;
  bool finishing = false;    // renaming into place: too late to cancel
  // The last download_progress event: a segmented transfer reports more often than events go.
  util::SteadyClock::time_point progress_event_at{};
  bool transferring = true;  // holds one of the max_parallel slots (or waits for one: ClaimAhead)
  util::SteadyClock::time_point launched_at = util::SteadyClock::now();
  // When the first answer of this attempt came (its StartedMsg): the time it held a slot is
  // measured from there, not from launched_at, which counts its wait in the engine too.
  std::optional<util::SteadyClock::time_point> answered_at;
  bool resumed = false;
  int failures = 0;
  std::optional<int64_t> failing_since_ms;
  int64_t best_bytes = 0;
  std::optional<std::string> sha256;
  std::string sha256_from;  // "": the user's --sha256 (or none); else the server's header
  IfExists if_exists = IfExists::kError;
};

// What a response head said of the file's sha256, as set_started stores it: the server's digest
// replaces one the server gave before, never the user's; a body from byte 0 without one drops a
// digest that may have been of another file.
inline void take_server_digest(Active& a, const transfer::Started& s) {
  if (a.sha256 && a.sha256_from.empty()) return;
  if (!s.server_sha256.empty()) {
    a.sha256 = s.server_sha256;
    a.sha256_from = s.server_sha256_from;
  } else if (s.from_bytes == 0) {
    a.sha256.reset();
    a.sha256_from.clear();
  }
}

// A completed download on its way through the settle thread.
struct Settling {
  FinishedMsg f;
  Active a;
  std::optional<transfer::Failure> failure;
};

}  // namespace fetchq::queue
