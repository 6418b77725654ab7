// `fetchq events` lines for people: short, one per event, progress thinned out per job.
#include "cli/event_lines.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace fetchq::cli {
namespace {

using json = nlohmann::json;

Event make(int64_t seq, const std::string& ts, int64_t job, const std::string& type, const json& payload) {
  return Event{seq, ts, job, type, payload.dump()};
}

const std::string kUrl = "http://mirror.example.org/releases/2026/very/long/path/shard-00003-of-00128.safetensors?sig=abc";

json progress(int64_t bytes, int64_t total) {
  return {{"source", kUrl}, {"download_path", "/data/models/shard-00003-of-00128.safetensors"},
          {"current_bytes", bytes}, {"total_bytes", total}};
}

TEST(EventLines, ALineHasTimeJobTypeNameAndPercentButNoUrl) {
  EventLines lines;
  auto l = lines.line(make(1, "2026-12-01T10:08:41.250Z", 12, "download_progress", progress(1 << 20, 4 << 20)));
  ASSERT_TRUE(l);
  EXPECT_EQ(l->rfind("1  10:08:41  #12  progress  ", 0), 0u) << *l;
  EXPECT_NE(l->find("25%"), std::string::npos) << *l;
  EXPECT_EQ(l->find("http"), std::string::npos) << *l;
  EXPECT_EQ(l->find("sig="), std::string::npos) << *l;
  EXPECT_LE(l->size(), 100u) << *l;
  // The name keeps both ends: the shard number and the extension.
  EXPECT_NE(l->find("shard-00"), std::string::npos) << *l;
  EXPECT_NE(l->find("safetensors"), std::string::npos) << *l;
}

TEST(EventLines, ProgressIsThinnedPerJobAndShowsTheRateBetweenLinesShown) {
  EventLines lines(5000);
  const int64_t total = 100 << 20;
  EXPECT_TRUE(lines.line(make(1, "2026-12-01T10:00:00.000Z", 1, "download_progress", progress(0, total))));
  // Another job is not thinned by the first one's line.
  EXPECT_TRUE(lines.line(make(2, "2026-12-01T10:00:01.000Z", 2, "download_progress", progress(0, total))));
  for (int s = 1; s < 5; ++s) {
    char ts[32];
    std::snprintf(ts, sizeof ts, "2026-12-01T10:00:0%d.000Z", s);
    EXPECT_FALSE(lines.line(make(2 + s, ts, 1, "download_progress", progress(s << 20, total)))) << s;
  }
  auto l = lines.line(make(9, "2026-12-01T10:00:05.000Z", 1, "download_progress", progress(10 << 20, total)));
  ASSERT_TRUE(l);
  EXPECT_NE(l->find("2.0 MiB/s"), std::string::npos) << *l;  // 10 MiB in 5 s
  // The last one (all bytes) is always shown.
  EXPECT_TRUE(lines.line(make(10, "2026-12-01T10:00:05.500Z", 1, "download_progress", progress(total, total))));
}

TEST(EventLines, OtherTypesSayWhatHappened) {
  EventLines lines;
  auto err = lines.line(make(1, "2026-12-01T10:00:00.000Z", 3, "download_error",
                             {{"source", kUrl}, {"error_type", "HTTPError"}, {"error", "HTTP 404\nNot Found"}}));
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("error"), std::string::npos);
  EXPECT_NE(err->find("HTTPError: HTTP 404 Not Found"), std::string::npos) << *err;
  EXPECT_EQ(err->find('\n'), std::string::npos);
  auto long_err = lines.line(make(4, "2026-12-01T10:00:00.000Z", 3, "download_error",
                                  {{"source", kUrl}, {"error_type", "HTTPError"}, {"error", std::string(500, 'x') + " END"}}));
  ASSERT_TRUE(long_err);
  EXPECT_LE(long_err->size(), 170u) << *long_err;
  EXPECT_NE(long_err->find("HTTPError: xxx"), std::string::npos) << *long_err;
  EXPECT_NE(long_err->find(" END"), std::string::npos) << *long_err;
  auto done = lines.line(make(2, "2026-12-01T10:00:00.000Z", 3, "download_complete",
                              {{"source", kUrl}, {"download_path", "/d/a.bin"}, {"total_bytes", 3 << 20}}));
  ASSERT_TRUE(done);
  EXPECT_NE(done->find("complete"), std::string::npos);
  EXPECT_NE(done->find("a.bin  3.0 MiB"), std::string::npos) << *done;
  auto retry = lines.line(make(3, "2026-12-01T10:00:00.000Z", 3, "download_retrying",
                               {{"source", kUrl}, {"attempt", 2}, {"delay_s", 90}, {"reason", "HTTP 503"}}));
  ASSERT_TRUE(retry);
  EXPECT_NE(retry->find("attempt 2 in 1m30s: HTTP 503"), std::string::npos) << *retry;
  auto dropped = lines.line(
      make(5, "2026-12-01T10:00:00.000Z", 3, "download_source_dropped",
           {{"source", kUrl}, {"url", "http://m.example/a.bin"}, {"reason", "HTTP 404"}}));
  ASSERT_TRUE(dropped);
  EXPECT_NE(dropped->find("source_dropped"), std::string::npos) << *dropped;
  EXPECT_NE(dropped->find("http://m.example/a.bin: HTTP 404"), std::string::npos) << *dropped;
}

TEST(EventLines, TypesAreParsedWithOrWithoutThePrefixAndUnknownOnesNamed) {
  std::string unknown;
  auto t = parse_event_types("progress,download_error", &unknown);
  EXPECT_TRUE(parse_event_types("source_dropped", &unknown)) << unknown;
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (std::set<std::string>{"download_progress", "download_error"}));
  EXPECT_FALSE(parse_event_types("progress,finished", &unknown));
  EXPECT_EQ(unknown, "finished");
  EXPECT_FALSE(parse_event_types(",", &unknown));
}

TEST(EventLines, NamesAreShortenedInTheMiddleByCodePoints) {
  EXPECT_EQ(shorten_middle("shard-00001.bin", 40), "shard-00001.bin");
  EXPECT_EQ(shorten_middle("shard-00001-of-00128.bin", 13), "shard-\xE2\x80\xA6" "28.bin");
  // A multi-byte name is never cut inside a character.
  std::string s = shorten_middle("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", 5);
  EXPECT_EQ(s, "\xC3\xA9\xC3\xA9\xE2\x80\xA6\xC3\xA9\xC3\xA9");
}

TEST(EventLines, StampsAreReadAsUtc) {
  EXPECT_EQ(parse_iso8601_ms("1970-01-01T00:00:01.500Z"), 1500);
  EXPECT_EQ(parse_iso8601_ms("1970-01-02T00:00:00Z"), 86400000);
  EXPECT_FALSE(parse_iso8601_ms("yesterday"));
}

}  // namespace
}  // namespace fetchq::cli
