// The `fetchq list` table: every row within the width, names told apart, a Sum row.
#include <gtest/gtest.h>

#include <sstream>

#include "cli/output.h"

namespace fetchq::cli {
namespace {

std::vector<std::string> rows(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::vector<Job> shards() {
  std::vector<Job> jobs;
  for (int i = 1; i <= 3; ++i) {
    Job j;
    j.id = i;
    j.source = "https://cdn.example.org/repo/resolve/main/model-0000" + std::to_string(i) + "-of-00003.safetensors";
    j.download_path = "/data/models/model-0000" + std::to_string(i) + "-of-00003.safetensors";
    j.status = i == 1 ? JobStatus::kRunning : (i == 2 ? JobStatus::kError : JobStatus::kCompleted);
    j.total_bytes = 4LL << 30;
    j.bytes = i == 1 ? 1LL << 30 : (i == 2 ? 0 : j.total_bytes);
    if (i == 2) j.error_type = "HTTPError(403 Forbidden)";
    jobs.push_back(j);
  }
  return jobs;
}

TEST(JobsTable, RowsFitTheWidthAndNamesKeepTheirEnds) {
  for (int width : {200, 80, 40}) {
    auto r = rows(jobs_table(shards(), {{1, 100.0 * (1 << 20)}}, width));
    ASSERT_EQ(r.size(), 5u) << width;  // head, three jobs, Sum
    for (size_t i = 0; i + 1 < r.size(); ++i) EXPECT_LE(utf8_width(r[i]), static_cast<size_t>(width)) << r[i];
    // Each shard is told apart by what survives of its name.
    EXPECT_NE(r[1].find("00001"), std::string::npos) << width << ": " << r[1];
    EXPECT_NE(r[2].find("00002"), std::string::npos) << width << ": " << r[2];
    EXPECT_NE(r[3].find("00003"), std::string::npos) << width << ": " << r[3];
    EXPECT_NE(r[1].find("running"), std::string::npos) << r[1];
    EXPECT_NE(r[1].find("25%"), std::string::npos) << r[1];
    if (width >= 80) {
      EXPECT_NE(r[1].find("100.0 MiB/s"), std::string::npos) << r[1];
      EXPECT_NE(r[2].find("HTTP 403"), std::string::npos) << width << ": " << r[2];
    }
    if (width >= 200) {
      EXPECT_NE(r[1].find("model-00001-of-00003.safetensors"), std::string::npos) << r[1];
    }
  }
  // No width (not a terminal): every column, names whole.
  auto whole = rows(jobs_table(shards(), {}, 0));
  EXPECT_NE(whole[1].find("model-00001-of-00003.safetensors"), std::string::npos) << whole[1];
  EXPECT_NE(whole[0].find("PRIO"), std::string::npos) << whole[0];
}

TEST(JobsTable, RateTimeLeftErrorAndSum) {
  auto r = rows(jobs_table(shards(), {{1, 100.0 * (1 << 20)}}, 0));
  EXPECT_NE(r[0].find("ERROR"), std::string::npos) << r[0];
  EXPECT_NE(r[1].find("100.0 MiB/s"), std::string::npos) << r[1];
  EXPECT_NE(r[1].find("31s"), std::string::npos) << r[1];  // 3 GiB left at 100 MiB/s: 30.7 s
  EXPECT_NE(r[2].find("HTTPError(403 Forbidden)"), std::string::npos) << r[2];  // not a terminal: whole
  EXPECT_EQ(r[3].find("HTTPError"), std::string::npos) << r[3];
  EXPECT_EQ(r[4], "Sum: 3 jobs, 5.0 GiB of 12.0 GiB, 100.0 MiB/s");
  // Without failures there is no error column.
  auto ok = shards();
  ok.erase(ok.begin() + 1);
  EXPECT_EQ(rows(jobs_table(ok, {}, 0))[0].find("ERROR"), std::string::npos);
  EXPECT_EQ(rows(jobs_table(ok, {}, 0)).back(), "Sum: 2 jobs, 5.0 GiB of 8.0 GiB");
}

TEST(JobsTable, ErrorTypesAreShortInTheTable) {
  EXPECT_EQ(short_error_type("HTTPError(404 Not Found)"), "HTTP 404");
  EXPECT_EQ(short_error_type("HTTPError(503 Service Unavailable)"), "HTTP 503");
  EXPECT_EQ(short_error_type("DestinationExists"), "DestinationExists");
  EXPECT_EQ(short_error_type("HTTPError("), "HTTPError(");
  // Narrow, with a failure and a running job: the reason stays before the rate does.
  auto jobs = shards();
  jobs[1].error_type = "ConnectionRefused";
  auto r = rows(jobs_table(jobs, {{1, 100.0 * (1 << 20)}}, 72));
  EXPECT_NE(r[2].find("ConnectionRefused"), std::string::npos) << r[0] << "\n" << r[2];
}

}  // namespace
}  // namespace fetchq::cli
