// Events: each type keeps its contract name (SPEC.md) and payload keys, byte for byte.
#include "queue/events.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace fetchq::queue {
namespace {

std::vector<std::string> Keys(const EventRecord& e) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : e.payload.items()) keys.push_back(k);
  return keys;  // nlohmann::json objects iterate in sorted order
}

struct Case {
  EventRecord event;
  EventType type;
  const char* name;
  std::vector<std::string> keys;  // sorted
};

TEST(Events, EachTypeHasItsContractNameAndKeys) {
  const std::vector<Case> cases = {
      {started_event("s", "/d/f"),
       EventType::kStarted,
       "download_started",
       {"download_path", "source"}},
      {progress_event("s", "/d/f", 1, 2),
       EventType::kProgress,
       "download_progress",
       {"current_bytes", "download_path", "source", "total_bytes"}},
      {complete_event("s", "/d/f", 2),
       EventType::kComplete,
       "download_complete",
       {"download_path", "source", "total_bytes"}},
      {error_event("s", "T", "m"),
       EventType::kError,
       "download_error",
       {"error", "error_type", "source"}},
      {cancelled_event("s"), EventType::kCancelled, "download_cancelled", {"source"}},
      {paused_event("s"), EventType::kPaused, "download_paused", {"source"}},
      {resumed_event("s", 5), EventType::kResumed, "download_resumed", {"from_bytes", "source"}},
      {restarted_event("s", "r"),
       EventType::kRestarted,
       "download_restarted",
       {"reason", "source"}},
      {limit_changed_event(2048),
       EventType::kLimitChanged,
       "download_limit_changed",
       {"limit_rate"}},
      {limit_changed_event("s", 2048),
       EventType::kLimitChanged,
       "download_limit_changed",
       {"limit_rate", "source"}},
      {retrying_event("s", 3, 1500, "T: m"),
       EventType::kRetrying,
       "download_retrying",
       {"attempt", "delay_s", "reason", "source"}},
      {source_dropped_event("s", "u", "r"),
       EventType::kSourceDropped,
       "download_source_dropped",
       {"reason", "source", "url"}},
  };
  std::set<EventType> seen;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(c.event.type, c.type);
    EXPECT_STREQ(c.event.name(), c.name);
    EXPECT_STREQ(event_name(c.type), c.name);
    EXPECT_EQ(Keys(c.event), c.keys);
    seen.insert(c.type);
  }
  // Every type of the enum is covered above, and names are distinct.
  std::set<std::string> names;
  for (EventType t : kAllEventTypes) {
    EXPECT_TRUE(seen.count(t)) << event_name(t);
    names.insert(event_name(t));
  }
  EXPECT_EQ(names.size(), kAllEventTypes.size());
}

// The exact bytes stored in events.payload, as the contract check and clients read them.
TEST(Events, PayloadBytesAreStable) {
  EXPECT_EQ(started_event("http://h/a", "/d/a").payload_text(),
            R"j({"download_path":"/d/a","source":"http://h/a"})j");
  EXPECT_EQ(
      progress_event("http://h/a", "/d/a", 10, -1).payload_text(),
      R"j({"current_bytes":10,"download_path":"/d/a","source":"http://h/a","total_bytes":-1})j");
  EXPECT_EQ(complete_event("http://h/a", "/d/a", 10).payload_text(),
            R"j({"download_path":"/d/a","source":"http://h/a","total_bytes":10})j");
  EXPECT_EQ(error_event("http://h/a", "HTTPError(404 Not Found)", "gone").payload_text(),
            R"j({"error":"gone","error_type":"HTTPError(404 Not Found)","source":"http://h/a"})j");
  EXPECT_EQ(cancelled_event("http://h/a").payload_text(), R"j({"source":"http://h/a"})j");
  EXPECT_EQ(paused_event("http://h/a").payload_text(), R"j({"source":"http://h/a"})j");
  EXPECT_EQ(resumed_event("http://h/a", 7).payload_text(),
            R"j({"from_bytes":7,"source":"http://h/a"})j");
  EXPECT_EQ(restarted_event("http://h/a", "etag changed").payload_text(),
            R"j({"reason":"etag changed","source":"http://h/a"})j");
  EXPECT_EQ(retrying_event("http://h/a", 2, 1500, "T: m").payload_text(),
            R"j({"attempt":2,"delay_s":1.5,"reason":"T: m","source":"http://h/a"})j");
  EXPECT_EQ(retrying_event("http://h/a", 1, 0, "T: m").payload_text(),
            R"j({"attempt":1,"delay_s":0.0,"reason":"T: m","source":"http://h/a"})j");
}

}  // namespace
}  // namespace fetchq::queue
