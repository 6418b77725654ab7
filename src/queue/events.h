// Events: the types of the event log and one builder per type for its payload.
//
// Names and payload keys are the contract of SPEC.md ("The database"): clients and the contract
// check compare them byte for byte, so a builder is the only place a payload is made. Values are
// JSON objects whose keys dump in sorted order. Callable from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace fetchq::queue {

enum class EventType {
  kStarted,
  kProgress,
  kComplete,
  kError,
  kCancelled,
  kPaused,
  kResumed,
  kRestarted,
  kRetrying,
  kLimitChanged,
  kSourceDropped,
};

inline constexpr std::array<EventType, 11> kAllEventTypes = {
    EventType::kStarted,      EventType::kProgress,     EventType::kComplete,
    EventType::kError,        EventType::kCancelled,    EventType::kPaused,
    EventType::kResumed,      EventType::kRestarted,    EventType::kRetrying,
    EventType::kLimitChanged, EventType::kSourceDropped};

// The name stored in events.type, e.g. "download_started".
const char* event_name(EventType type);

// One event ready to append: its type and its payload.
struct EventRecord {
  EventType type;
  nlohmann::json payload;
  const char* name() const { return event_name(type); }
  std::string payload_text() const { return payload.dump(); }
};

EventRecord started_event(const std::string& source, const std::string& download_path);
EventRecord progress_event(const std::string& source, const std::string& download_path,
                           int64_t current_bytes, int64_t total_bytes);
EventRecord complete_event(const std::string& source, const std::string& download_path,
                           int64_t total_bytes);
EventRecord error_event(const std::string& source, const std::string& error_type,
                        const std::string& error);
EventRecord cancelled_event(const std::string& source);
EventRecord paused_event(const std::string& source);
EventRecord resumed_event(const std::string& source, int64_t from_bytes);
EventRecord restarted_event(const std::string& source, const std::string& reason);
// delay_ms is shown in seconds (delay_s); reason is "<error_type>: <error>".
// A bandwidth limit changed (set_limits): the queue's (job_id 0, no source) or one job's, in
// bytes per second; 0: lifted.
EventRecord limit_changed_event(int64_t limit_rate);
EventRecord limit_changed_event(const std::string& source, int64_t limit_rate);
EventRecord retrying_event(const std::string& source, int attempt, int64_t delay_ms,
                           const std::string& reason);
// The attempt stopped using one of the job's sources (`url`: the job's own or a mirror), and
// goes on with the others.
EventRecord source_dropped_event(const std::string& source, const std::string& url,
                                 const std::string& reason);

}  // namespace fetchq::queue
