// Events: names and payload builders of events.h.
#include "queue/events.h"

namespace fetchq::queue {

using json = nlohmann::json;

const char* event_name(EventType type) {
  switch (type) {
    case EventType::kStarted:
      return "download_started";
    case EventType::kProgress:
      return "download_progress";
    case EventType::kComplete:
      return "download_complete";
    case EventType::kError:
      return "download_error";
    case EventType::kCancelled:
      return "download_cancelled";
    case EventType::kPaused:
      return "download_paused";
    case EventType::kResumed:
      return "download_resumed";
    case EventType::kRestarted:
      return "download_restarted";
    case EventType::kRetrying:
      return "download_retrying";
    case EventType::kLimitChanged:
      return "download_limit_changed";
    case EventType::kSourceDropped:
      return "download_source_dropped";
  }
  return "download_unknown";
}

EventRecord started_event(const std::string& source, const std::string& download_path) {
  return {EventType::kStarted, {{"source", source}, {"download_path", download_path}}};
}

EventRecord progress_event(const std::string& source, const std::string& download_path,
                           int64_t current_bytes, int64_t total_bytes) {
  return {EventType::kProgress,
          {{"source", source},
           {"download_path", download_path},
           {"current_bytes", current_bytes},
           {"total_bytes", total_bytes}}};
}

EventRecord complete_event(const std::string& source, const std::string& download_path,
                           int64_t total_bytes) {
  return {EventType::kComplete,
          {{"source", source}, {"download_path", download_path}, {"total_bytes", total_bytes}}};
}

EventRecord error_event(const std::string& source, const std::string& error_type,
                        const std::string& error) {
  return {EventType::kError, {{"source", source}, {"error_type", error_type}, {"error", error}}};
}

EventRecord cancelled_event(const std::string& source) {
  return {EventType::kCancelled, {{"source", source}}};
}

EventRecord paused_event(const std::string& source) {
  return {EventType::kPaused, {{"source", source}}};
}

EventRecord resumed_event(const std::string& source, int64_t from_bytes) {
  return {EventType::kResumed, {{"source", source}, {"from_bytes", from_bytes}}};
}

EventRecord restarted_event(const std::string& source, const std::string& reason) {
  return {EventType::kRestarted, {{"source", source}, {"reason", reason}}};
}

EventRecord limit_changed_event(int64_t limit_rate) {
  return {EventType::kLimitChanged, {{"limit_rate", limit_rate}}};
}

EventRecord limit_changed_event(const std::string& source, int64_t limit_rate) {
  return {EventType::kLimitChanged, {{"limit_rate", limit_rate}, {"source", source}}};
}

EventRecord retrying_event(const std::string& source, int attempt, int64_t delay_ms,
                           const std::string& reason) {
  return {EventType::kRetrying,
          {{"source", source},
           {"attempt", attempt},
           {"delay_s", static_cast<double>(delay_ms) / 1000.0},
           {"reason", reason}}};
}

EventRecord source_dropped_event(const std::string& source, const std::string& url,
                                 const std::string& reason) {
  return {EventType::kSourceDropped, {{"source", source}, {"url", url}, {"reason", reason}}};
}

}  // namespace fetchq::queue
