// The progress display of `fetchq get` and `fetchq wait --progress` at 200, 80 and 40 columns.
#include "cli/progress_view.h"

#include <gtest/gtest.h>

#include "cli/output.h"

namespace fetchq::cli {
namespace {

std::vector<Job> shards(int n) {
  std::vector<Job> jobs;
  for (int i = 1; i <= n; ++i) {
    Job j;
    j.id = i;
    j.source = "http://127.0.0.1/shard-0000" + std::to_string(i) + ".bin";
    j.download_path = "/data/shard-0000" + std::to_string(i) + ".bin";
    j.status = i <= 2 ? JobStatus::kRunning : (i == 3 ? JobStatus::kCompleted : JobStatus::kWaiting);
    j.total_bytes = 1 << 30;
    j.bytes = i <= 2 ? (1 << 28) * i : (i == 3 ? j.total_bytes : 0);
    jobs.push_back(j);
  }
  return jobs;
}

TEST(ProgressView, NoLineIsWiderThanTheTerminalAndSimilarNamesStayApart) {
  const auto jobs = shards(6);
  const std::vector<JobRate> rates{{1, 50.0 * (1 << 20)}, {2, 25.0 * (1 << 20)}};
  for (int width : {200, 80, 40}) {
    auto lines = progress_lines(jobs, rates, width);
    ASSERT_EQ(lines.size(), 7u) << width;  // six jobs (few enough to show all), the overall line
    for (const auto& l : lines) EXPECT_LE(utf8_width(l), static_cast<size_t>(width)) << width << ": " << l;
    EXPECT_NE(lines[0].find("00001"), std::string::npos) << lines[0];
    EXPECT_NE(lines[1].find("00002"), std::string::npos) << lines[1];
    EXPECT_NE(lines[0].find("25%"), std::string::npos) << lines[0];
    if (width >= 80) {
      EXPECT_NE(lines[0].find("50.0 MiB/s"), std::string::npos) << lines[0];
      EXPECT_NE(lines[2].find("completed"), std::string::npos) << lines[2];
    }
  }
  auto all = progress_lines(jobs, rates, 200).back();
  EXPECT_NE(all.find("1/6 files"), std::string::npos) << all;
  EXPECT_NE(all.find("75.0 MiB/s"), std::string::npos) << all;
  EXPECT_NE(all.find("left"), std::string::npos) << all;
  EXPECT_NE(all.find("2 running, 3 waiting"), std::string::npos) << all;
}

TEST(ProgressView, ANarrowOverallLineDropsWholePartsLeastNeededFirst) {
  const auto jobs = shards(6);
  const std::vector<JobRate> rates{{1, 50.0 * (1 << 20)}, {2, 25.0 * (1 << 20)}};
  const auto at40 = progress_lines(jobs, rates, 40).back();
  EXPECT_LE(utf8_width(at40), 40u) << at40;
  EXPECT_EQ(at40.find("\u2026"), std::string::npos) << at40;  // nothing cut in the middle
  EXPECT_EQ(at40.rfind("1/6 files, ", 0), 0u) << at40;
  EXPECT_NE(at40.find("/6.0 GiB"), std::string::npos) << at40;
  EXPECT_NE(at40.find(" left"), std::string::npos) << at40;
  EXPECT_EQ(at40.find("waiting"), std::string::npos) << at40;
  // Wide enough, every part is there, in its place.
  const auto at200 = progress_lines(jobs, rates, 200).back();
  EXPECT_LT(at200.find("MiB/s"), at200.find(" left")) << at200;
  EXPECT_LT(at200.find(" left"), at200.find("2 running, 3 waiting")) << at200;
}

TEST(ProgressView, ManyJobsShowTheRunningOnesOnly) {
  auto lines = progress_lines(shards(9), {}, 80, 4);
  EXPECT_EQ(lines.size(), 3u);  // the two running ones and the overall line
}

TEST(ProgressView, TheSummarySaysFilesSizeTimeRateAndFailures) {
  auto jobs = shards(3);
  jobs[0].status = JobStatus::kCompleted;
  jobs[0].bytes = jobs[0].total_bytes;
  jobs[1].status = JobStatus::kError;
  jobs[1].error_type = "HTTPError(404 Not Found)";
  auto s = summary_lines(jobs, 16);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0], "2 files, 2.0 GiB in 16s (128.0 MiB/s); 1 failed");
  EXPECT_NE(s[1].find("shard-00002.bin: HTTPError(404 Not Found)"), std::string::npos) << s[1];
}

TEST(ProgressView, ARedrawClearsTheRowsTheLastFrameTakesAtTheNewWidth) {
  LiveArea area;
  std::string first = area.frame({std::string(100, 'a'), std::string(100, 'b')}, 100);
  EXPECT_EQ(first.rfind("\x1b[J", 0), 0u);  // nothing above to go back over
  // Narrowed to 40 columns: each 100-column line now takes 3 rows.
  std::string second = area.frame({"x"}, 40);
  EXPECT_EQ(second.rfind("\x1b[6F\x1b[J", 0), 0u) << second.substr(0, 10);
  // Lines are cut to the width, so the next frame goes back exactly one row.
  std::string third = area.frame({std::string(100, 'c')}, 40);
  EXPECT_EQ(third.rfind("\x1b[1F\x1b[J", 0), 0u);
  EXPECT_EQ(area.clear(40).rfind("\x1b[1F\x1b[J", 0), 0u);
}

}  // namespace
}  // namespace fetchq::cli
