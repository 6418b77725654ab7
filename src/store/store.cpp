// store::open: from a spec (a path or a URL-like name) to the backend that serves it.
#include "store/store.h"

#include <string_view>

#include "store/forwarding_store.h"
#include "store/sqlite/sqlite_store.h"
#include "util/fs.h"

namespace fetchq::store {
namespace {

constexpr std::string_view kSqlitePrefix = "sqlite:";

// The scheme of "scheme://...", empty when the spec is no URL (then it is a path).
std::string_view url_scheme(std::string_view spec) {
  auto colon = spec.find("://");
  if (colon == std::string_view::npos || colon == 0) return {};
  for (size_t i = 0; i < colon; ++i) {
    char c = spec[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
    if (!ok) return {};
  }
  return spec.substr(0, colon);
}

}  // namespace

std::string_view to_string(StoreErrorKind kind) {
  switch (kind) {
    case StoreErrorKind::kBusy:
      return "busy";
    case StoreErrorKind::kIo:
      return "io";
    case StoreErrorKind::kCorrupt:
      return "corrupt";
    case StoreErrorKind::kFull:
      return "full";
    case StoreErrorKind::kConstraint:
      return "constraint";
    case StoreErrorKind::kOther:
      return "other";
  }
  return "other";
}

std::string_view to_string(StoreOp op) {
  switch (op) {
    case StoreOp::kTransaction:
      return "transaction";
    case StoreOp::kInsertJobs:
      return "insert_jobs";
    case StoreOp::kClaim:
      return "claim";
    case StoreOp::kNextRetryMs:
      return "next_retry_ms";
    case StoreOp::kRecoverRunning:
      return "recover_running";
    case StoreOp::kSetStarted:
      return "set_started";
    case StoreOp::kSetProgress:
      return "set_progress";
    case StoreOp::kFinish:
      return "finish";
    case StoreOp::kRequeue:
      return "requeue";
    case StoreOp::kNoteBestBytes:
      return "note_best_bytes";
    case StoreOp::kSetCheckpoint:
      return "set_checkpoint";
    case StoreOp::kSeal:
      return "seal";
    case StoreOp::kRecordPart:
      return "record_part";
    case StoreOp::kResetResumeState:
      return "reset_resume_state";
    case StoreOp::kSaveSegments:
      return "save_segments";
    case StoreOp::kLoadSegments:
      return "load_segments";
    case StoreOp::kForgetSegments:
      return "forget_segments";
    case StoreOp::kChangeStatus:
      return "change_status";
    case StoreOp::kGetJob:
      return "get_job";
    case StoreOp::kListJobs:
      return "list_jobs";
    case StoreOp::kCounts:
      return "counts";
    case StoreOp::kAnyUnfinished:
      return "any_unfinished";
    case StoreOp::kIdsIn:
      return "ids_in";
    case StoreOp::kPrune:
      return "prune";
    case StoreOp::kAppendEvent:
      return "append_event";
    case StoreOp::kEventsSince:
      return "events_since";
    case StoreOp::kLastEventSeq:
      return "last_event_seq";
    case StoreOp::kFirstEventSeq:
      return "first_event_seq";
    case StoreOp::kTrimEvents:
      return "trim_events";
  }
  return "store call";
}

Result<std::unique_ptr<Store>> open(const std::string& spec, OpenOptions options) {
  std::string_view view(spec);
  if (view.starts_with(kSqlitePrefix)) {
    std::string path(view.substr(kSqlitePrefix.size()));
    if (path.empty())
      return make_error(ErrorCode::kInvalidArgument, "the store spec \"sqlite:\" names no file");
    return open_sqlite_store(path, options);
  }
  if (auto scheme = url_scheme(view); !scheme.empty()) {
    if (scheme == "postgresql" || scheme == "postgres") {
      return make_error(ErrorCode::kInvalidArgument,
                        "postgresql stores are not built in this fetchq; give an SQLite file "
                        "(PATH or sqlite:PATH)");
    }
    return make_error(ErrorCode::kInvalidArgument,
                      "unknown kind of store \"" + std::string(scheme) +
                          "\"; give an SQLite file (PATH or sqlite:PATH)");
  }
  return open_sqlite_store(spec, options);
}

std::string absolute_spec(const std::string& spec) {
  std::string_view view(spec);
  if (view.starts_with(kSqlitePrefix)) {
    return std::string(kSqlitePrefix) + util::absolute_path(spec.substr(kSqlitePrefix.size()));
  }
  if (!url_scheme(view).empty()) return spec;
  return util::absolute_path(spec);
}

}  // namespace fetchq::store
