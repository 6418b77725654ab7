// A full disk, for real: a small tmpfs mounted for the test. The job ends in error naming the
// path and the cause, keeps its .part, and resumes once space is freed.
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>

#include "integration/helpers.h"

namespace fetchq::testing {
namespace {

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mnt_ = dir_ / "small";
    std::filesystem::create_directories(mnt_);
    if (::geteuid() != 0 || ::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=3m") != 0) {
      GTEST_SKIP() << "needs root to mount a tmpfs";
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }
  TempDir dir_;
  TestServer server_;
  std::string mnt_;
  bool mounted_ = false;
};

TEST_F(DiskFullTest, WriteFailureKeepsThePartAndRetryResumes) {
  write_file(mnt_ + "/filler", std::string(2 << 20, 'f'));
  Resource r;
  r.body = make_body(2 << 20, 51);
  r.no_length = true;  // unknown size: only the write itself can find the disk full
  server_.add("/big.bin", r);
  auto q = open_queue(fast_options(dir_));
  auto job = submit(*q, server_.url("/big.bin"), mnt_ + "/big.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type.value_or(""), "DiskFull");
  EXPECT_NE(j->error.value_or("").find(mnt_ + "/big.bin.part"), std::string::npos) << *j->error;
  EXPECT_NE(j->error.value_or("").find("No space left on device"), std::string::npos) << *j->error;
  ASSERT_TRUE(file_exists(mnt_ + "/big.bin.part"));
  auto kept = std::filesystem::file_size(mnt_ + "/big.bin.part");
  EXPECT_GT(kept, 0u);
  EXPECT_FALSE(file_exists(mnt_ + "/big.bin"));

  std::filesystem::remove(mnt_ + "/filler");
  r.no_length = false;  // the server now answers ranges with lengths
  server_.add("/big.bin", r);
  ASSERT_TRUE(q->retry_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_EQ(sha256_file(mnt_ + "/big.bin"), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/big.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].range, "bytes=" + std::to_string(kept) + "-");
}

TEST_F(DiskFullTest, FreeSpaceIsCheckedBeforeStartingWhenTheSizeIsKnown) {
  write_file(mnt_ + "/filler", std::string(2 << 20, 'f'));
  Resource r;
  r.body = make_body(2 << 20, 52);
  server_.add("/known.bin", r);
  auto q = open_queue(fast_options(dir_));
  auto job = submit(*q, server_.url("/known.bin"), mnt_ + "/known.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type.value_or(""), "DiskFull");
  EXPECT_NE(j->error.value_or("").find("not enough space"), std::string::npos) << *j->error;
  // Refused before writing a byte of the body: nothing of it is on the small disk.
  EXPECT_FALSE(file_exists(mnt_ + "/known.bin.part"));
  EXPECT_FALSE(file_exists(mnt_ + "/known.bin"));
}

}  // namespace
}  // namespace fetchq::testing
