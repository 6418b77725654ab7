// store::open: from a spec (a path or a URL-like name) to the backend that serves it.
#include "store/store.h"

#include <cctype>
#include <string_view>

#include "store/forwarding_store.h"
#include "store/sqlite/sqlite_store.h"

namespace fetchq::store {
namespace {

constexpr std::string_view kUsePath = "; give an SQLite file (PATH or sqlite:PATH)";

bool scheme_char(char c, bool first) {
  bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return letter || (!first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
}

// The scheme a spec starts with, lowercased; empty when the spec is a plain path. A name
// before "://" is a scheme; so is a name before a lone ':' when it has no '.' (so "q.db:1"
// stays a file name, while "foo:bar" and "sqlite:q.db" name a kind of store).
std::string scheme_of(std::string_view spec) {
  auto colon = spec.find(':');
  if (colon == std::string_view::npos || colon == 0) return {};
  bool url = spec.substr(colon).starts_with("://");
  for (size_t i = 0; i < colon; ++i) {
    char c = spec[i];
    if (!scheme_char(c, i == 0)) return {};
    if (c == '.' && !url) return {};
  }
  std::string scheme(spec.substr(0, colon));
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return scheme;
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
    case StoreOp::kFenceEvents:
      return "fence_events";
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
    case StoreOp::kForgetUnsynced:
      return "forget_unsynced";
    case StoreOp::kSaveSegments:
      return "save_segments";
    case StoreOp::kNoteSegmentsWritten:
      return "note_segments_written";
    case StoreOp::kLoadSegments:
      return "load_segments";
    case StoreOp::kForgetSegments:
      return "forget_segments";
    case StoreOp::kChangeStatus:
      return "change_status";
    case StoreOp::kSetSource:
      return "set_source";
    case StoreOp::kHasSecrets:
      return "has_secrets";
    case StoreOp::kGetJob:
      return "get_job";
    case StoreOp::kPartRecord:
      return "part_record";
    case StoreOp::kListJobs:
      return "list_jobs";
    case StoreOp::kCounts:
      return "counts";
    case StoreOp::kAnyUnfinished:
      return "any_unfinished";
    case StoreOp::kIdsIn:
      return "ids_in";
    case StoreOp::kLiveTargets:
      return "live_targets";
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
    case StoreOp::kSetLimitRate:
      return "set_limit_rate";
  }
  return "store call";
}

Result<Location> locate(const std::string& spec) {
  if (spec.empty()) return make_error(ErrorCode::kInvalidArgument, "the store spec is empty");
  std::string scheme = scheme_of(spec);
  if (scheme.empty()) return Location{StoreKind::kSqlite, spec};
  std::string_view rest = std::string_view(spec).substr(scheme.size() + 1);
  if (scheme == "sqlite") {
    if (rest.starts_with("//")) {
      // URL form: sqlite:///ABSOLUTE/PATH, with an empty host.
      rest.remove_prefix(2);
      if (!rest.starts_with("/")) {
        return make_error(ErrorCode::kInvalidArgument,
                          "an sqlite:// store names no host: write sqlite:PATH or "
                          "sqlite:///ABSOLUTE/PATH");
      }
    }
    if (rest.empty()) {
      return make_error(ErrorCode::kInvalidArgument, "the store spec \"sqlite:\" names no file");
    }
    return Location{StoreKind::kSqlite, std::string(rest)};
  }
  if (scheme == "postgresql" || scheme == "postgres") {
    return make_error(ErrorCode::kInvalidArgument,
                      "PostgreSQL is not supported yet" + std::string(kUsePath));
  }
  return make_error(ErrorCode::kInvalidArgument,
                    "unknown kind of store \"" + scheme + "\"" + std::string(kUsePath) +
                        "; for a file whose name holds ':', write ./NAME");
}

Result<std::unique_ptr<Store>> open(const std::string& spec, OpenOptions options) {
  auto location = locate(spec);
  if (!location) return location.error();
  return open(location.value(), options);
}

Result<std::unique_ptr<Store>> open(const Location& location, OpenOptions options) {
  switch (location.kind) {
    case StoreKind::kSqlite:
      return open_sqlite_store(location.path, options);
  }
  return make_error(ErrorCode::kInternal, "unknown kind of store");
}

}  // namespace fetchq::store
