// from_json reads back what to_json writes: every field of Job and Event, optional ones set and
// unset, so the control client sees the jobs the daemon sent.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fetchq/job.h"

namespace fetchq {
namespace {

using json = nlohmann::json;

Job full_job() {
  Job j;
  j.id = 9007199254740993;  // above 2^53: must not pass through a double
  j.source = "https://example.org/a%20b.bin?x=1";
  j.dest = "/srv/dl/";
  j.priority = -7;
  j.status = JobStatus::kError;
  j.download_path = "/srv/dl/a b.bin";
  j.job_started = "2026-01-02T03:04:05.678Z";
  j.job_ended = "2026-01-02T03:04:06.000Z";
  j.bytes = 123456789012;
  j.total_bytes = 223456789012;
  j.error_type = "http_status";
  j.error = "HTTP 404 from example.org";
  j.cancelled = true;
  j.attempts = 3;
  j.has_access_token = true;
  j.created_at = "2026-01-02T03:04:00.001Z";
  return j;
}

void expect_same(const Job& a, const Job& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.dest, b.dest);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.download_path, b.download_path);
  EXPECT_EQ(a.job_started, b.job_started);
  EXPECT_EQ(a.job_ended, b.job_ended);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.total_bytes, b.total_bytes);
  EXPECT_EQ(a.error_type, b.error_type);
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.cancelled, b.cancelled);
  EXPECT_EQ(a.attempts, b.attempts);
  EXPECT_EQ(a.has_access_token, b.has_access_token);
  EXPECT_EQ(a.created_at, b.created_at);
}

TEST(JobFromJsonTest, EveryFieldRoundTrips) {
  Job in = full_job();
  // Through text, as the client gets it.
  Job out = json::parse(json(in).dump()).get<Job>();
  expect_same(in, out);
  EXPECT_EQ(json(out).dump(), json(in).dump());
}

TEST(JobFromJsonTest, UnsetOptionalsStayUnset) {
  Job in = full_job();
  in.download_path.reset();
  in.job_started.reset();
  in.job_ended.reset();
  in.error_type.reset();
  in.error.reset();
  in.status = JobStatus::kWaiting;
  in.cancelled = false;
  in.has_access_token = false;
  // A Job read into an object whose optionals were set: null clears them.
  Job out = full_job();
  from_json(json::parse(json(in).dump()), out);
  expect_same(in, out);
}

TEST(JobFromJsonTest, EveryStatusRoundTrips) {
  for (auto s : {JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused, JobStatus::kCompleted,
                 JobStatus::kCancelled, JobStatus::kError}) {
    Job in;
    in.status = s;
    EXPECT_EQ(json(in).get<Job>().status, s);
  }
}

TEST(JobFromJsonTest, WrongTypesAndUnknownStatusThrow) {
  json j = json(full_job());
  j["status"] = "sleeping";
  EXPECT_THROW(j.get<Job>(), json::exception);
  j = json(full_job());
  j["bytes"] = "many";
  EXPECT_THROW(j.get<Job>(), json::exception);
}

TEST(EventFromJsonTest, EveryFieldRoundTrips) {
  Event in;
  in.seq = 42;
  in.ts = "2026-01-02T03:04:05.678Z";
  in.job_id = 7;
  in.type = "download_complete";
  in.payload = R"({"bytes":10,"download_path":"/srv/dl/a.bin","source":"https://example.org/a"})";
  Event out = json::parse(json(in).dump()).get<Event>();
  EXPECT_EQ(out.seq, in.seq);
  EXPECT_EQ(out.ts, in.ts);
  EXPECT_EQ(out.job_id, in.job_id);
  EXPECT_EQ(out.type, in.type);
  EXPECT_EQ(json::parse(out.payload), json::parse(in.payload));
  EXPECT_EQ(json(out).dump(), json(in).dump());
}

TEST(EventFromJsonTest, EmptyPayloadIsAnEmptyObject) {
  Event in;
  in.seq = 1;
  in.payload = "{}";
  Event out = json(in).get<Event>();
  EXPECT_EQ(out.payload, "{}");
}

}  // namespace
}  // namespace fetchq
