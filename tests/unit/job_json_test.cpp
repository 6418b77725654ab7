// append_json must write exactly the text nlohmann gives for a job, whatever its strings hold.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fetchq/job.h"

namespace fetchq {
namespace {

std::string via_nlohmann(const Job& j) {
  return nlohmann::json(j).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string direct(const Job& j) {
  std::string out = "[";  // appends, never overwrites what is there
  append_json(out, j);
  return out.substr(1);
}

TEST(JobJson, AFreshJobMatchesNlohmann) {
  Job j;
  j.id = 42;
  j.source = "https://example.org/models/weights.bin?x=1&y=2";
  j.dest = "/srv/models/";
  j.created_at = "2026-11-29T10:00:00.000Z";
  EXPECT_EQ(direct(j), via_nlohmann(j));
}

TEST(JobJson, EveryFieldSetMatchesNlohmann) {
  Job j;
  j.id = 9007199254740993;
  j.source = "http://h/a";
  j.dest = "/d/f";
  j.priority = -3;
  j.status = JobStatus::kError;
  j.download_path = "/d/f";
  j.job_started = "2026-11-29T10:00:00.000Z";
  j.job_ended = "2026-11-29T10:00:01.000Z";
  j.bytes = 5'000'000'000;
  j.total_bytes = 6'000'000'000;
  j.error_type = "HTTPError(404 Not Found)";
  j.error = "GET http://h/a returned HTTP 404 Not Found";
  j.cancelled = true;
  j.attempts = 7;
  j.has_access_token = true;
  j.created_at = "2026-11-29T09:59:59.999Z";
  for (auto st : {JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused, JobStatus::kCompleted,
                  JobStatus::kCancelled, JobStatus::kError}) {
    j.status = st;
    EXPECT_EQ(direct(j), via_nlohmann(j));
  }
}

TEST(JobJson, SegmentsShowOnlyWhileSegmentedAndMatchNlohmann) {
  Job j;
  j.id = 3;
  j.created_at = "t";
  EXPECT_FALSE(nlohmann::json(j).contains("segments"));
  j.segments = {{0, 8, 8}, {8, 16, 3}};
  EXPECT_EQ(direct(j), via_nlohmann(j));
  auto js = nlohmann::json(j);
  ASSERT_TRUE(js["segments"].is_array());
  EXPECT_EQ(js["segments"][1], (nlohmann::json{{"start", 8}, {"end", 16}, {"bytes", 3}}));
  EXPECT_EQ(js.get<Job>().segments, j.segments);
}

TEST(JobJson, HeadersAndUserAgentAreAlwaysPresentAndMatchNlohmann) {
  Job j;
  j.id = 4;
  j.created_at = "t";
  auto bare = nlohmann::json(j);
  EXPECT_EQ(bare["headers"], nlohmann::json::array());
  EXPECT_TRUE(bare["user_agent"].is_null());
  EXPECT_EQ(direct(j), via_nlohmann(j));
  j.headers = {"X-A: 1", "Authorization: <secret>", "X-Quote: \"q\""};
  j.user_agent = "agent/1 (\u00e9)";
  EXPECT_EQ(direct(j), via_nlohmann(j));
  auto back = nlohmann::json(j).get<Job>();
  EXPECT_EQ(back.headers, j.headers);
  EXPECT_EQ(back.user_agent, j.user_agent);
}

TEST(JobJson, MirrorsAreAlwaysPresentInOrderAndMatchNlohmann) {
  Job j;
  j.id = 5;
  j.created_at = "t";
  j.limit_rate = 100;  // the keys around "mirrors" in sorted order: limit_rate, priority
  auto bare = nlohmann::json(j);
  ASSERT_TRUE(bare.contains("mirrors"));
  EXPECT_EQ(bare["mirrors"], nlohmann::json::array());
  EXPECT_EQ(direct(j), via_nlohmann(j));
  j.mirrors = {"https://b.example/f", "http://c.example:8080/f?x=\"1\"", "https://a.example/f"};
  EXPECT_EQ(direct(j), via_nlohmann(j));
  auto js = nlohmann::json::parse(direct(j));
  EXPECT_EQ(js["mirrors"], (nlohmann::json{"https://b.example/f", "http://c.example:8080/f?x=\"1\"",
                                           "https://a.example/f"}));
  EXPECT_EQ(js.get<Job>().mirrors, j.mirrors);
  // A reply without the field (an older daemon) reads as no mirrors.
  Job reused;
  reused.mirrors = {"https://stale.example/f"};
  nlohmann::json old = nlohmann::json(j);
  old.erase("mirrors");
  from_json(old, reused);
  EXPECT_TRUE(reused.mirrors.empty());
}

TEST(JobJson, StringsThatNeedEscapingMatchNlohmann) {
  Job j;
  j.source = "http://h/\"quoted\"\\back\tslash\n";
  j.dest = std::string("/d/\x01\x1f\x7f/caf\xc3\xa9/\xe2\x82\xac");
  j.download_path = std::string("/d/bad\xff\xfeutf8\xc3");  // not UTF-8: replaced, never thrown
  j.error = std::string("nul\0inside", 10);
  j.created_at = "t";
  EXPECT_EQ(direct(j), via_nlohmann(j));
  auto parsed = nlohmann::json::parse(direct(j));
  EXPECT_EQ(parsed["source"], j.source);
  EXPECT_EQ(parsed["error"].get<std::string>().size(), 10u);
}

}  // namespace
}  // namespace fetchq
