// PrefixHash: the sha256 of a file taken as it is written, on the hasher's thread; finish()
// reads only what was not hashed yet, and reads the whole file again when what was hashed may
// no longer be there.
#include "transfer/prefix_hash.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "support/temp_dir.h"
#include "transfer/transfer.h"
#include "util/env.h"
#include "util/fs.h"

namespace fetchq::testing {
namespace {

// Counts the bytes read through it; fails the next `fail_reads` reads with EIO.
class CountingEnv final : public util::EnvWrapper {
 public:
  CountingEnv() : util::EnvWrapper(util::Env::posix()) {}
  ssize_t pread(int fd, void* data, size_t len, off_t offset) override {
    if (fail_reads > 0) {
      --fail_reads;
      errno = EIO;
      return -1;
    }
    ssize_t n = util::EnvWrapper::pread(fd, data, len, offset);
    if (n > 0) read_bytes += n;
    return n;
  }
  std::atomic<int64_t> read_bytes{0};
  std::atomic<int> fail_reads{0};
};

class PrefixHashTest : public ::testing::Test {
 protected:
  TempDir dir_;
  CountingEnv env_;
  std::string path_ = dir_ / "f";
  std::shared_ptr<transfer::PartFile> file_;

  void SetUp() override {
    int fd = ::open((path_ + ".part").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    file_ = std::make_shared<transfer::PartFile>(fd, path_, nullptr);
  }
  void append(size_t n, char seed) {
    std::string chunk(n, '\0');
    for (size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(seed + i * 31 + (i >> 9));
    ASSERT_EQ(::write(file_->fd(), chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
  }
  static std::string sum_of(const std::string& path) {
    auto sum = util::sha256_file(path);
    return sum.ok() ? *sum : "(unreadable)";
  }
  std::string whole() { return sum_of(path_ + ".part"); }
  static bool hashed_to(const transfer::PrefixHash& h, int64_t n) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (h.hashed() < n && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(h.hashed(), n);
    return h.hashed() == n;
  }
};

TEST_F(PrefixHashTest, TheCheckAtTheEndReadsOnlyWhatWasWrittenAfterTheLastStep) {
  transfer::PrefixHasher hasher(env_);
  auto h = hasher.start(file_);
  for (int i = 0; i < 4; ++i) {
    append(4 << 20, static_cast<char>(i));
    hasher.advance(h, int64_t{i + 1} * (4 << 20));
  }
  ASSERT_TRUE(hashed_to(*h, 16 << 20));
  append(3 << 20, 9);  // written, not handed over yet
  const int64_t before = env_.read_bytes;
  auto sum = h->finish();
  ASSERT_TRUE(sum.ok()) << sum.error().message;
  EXPECT_EQ(*sum, whole());
  EXPECT_EQ(env_.read_bytes - before, 3 << 20);
  EXPECT_EQ(h->hashed(), 16 << 20);
  EXPECT_EQ(env_.read_bytes, 19 << 20);  // every byte read once
}

TEST_F(PrefixHashTest, BytesNotYetHandedOverAreNeverHashedAhead) {
  transfer::PrefixHasher hasher(env_);
  auto h = hasher.start(file_);
  append(8 << 20, 1);
  hasher.advance(h, 2 << 20);
  ASSERT_TRUE(hashed_to(*h, 2 << 20));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(h->hashed(), 2 << 20);  // the rest may still change: it waits
  EXPECT_EQ(*h->finish(), whole());
}

TEST_F(PrefixHashTest, AFileCutBelowWhatWasHashedIsReadAgainWhole) {
  transfer::PrefixHasher hasher(env_);
  auto h = hasher.start(file_);
  append(6 << 20, 2);
  hasher.advance(h, 6 << 20);
  ASSERT_TRUE(hashed_to(*h, 6 << 20));
  ASSERT_EQ(::ftruncate(file_->fd(), 1 << 20), 0);  // by somebody else
  auto sum = h->finish();
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(*sum, whole());
  EXPECT_EQ(h->hashed(), 0);
}

TEST_F(PrefixHashTest, AFailedReadOnTheHashersThreadMeansTheWholeFileIsReadAtTheEnd) {
  transfer::PrefixHasher hasher(env_);
  append(5 << 20, 3);
  env_.fail_reads = 1;
  auto h = hasher.start(file_);
  hasher.advance(h, 5 << 20);
  // The hasher's first read fails; afterwards it takes no step (none goes on from a gap).
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (env_.fail_reads > 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(env_.fail_reads, 0);
  hasher.advance(h, 5 << 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(h->hashed(), 0);
  auto sum = h->finish();
  ASSERT_TRUE(sum.ok()) << sum.error().message;
  EXPECT_EQ(*sum, whole());
}

TEST_F(PrefixHashTest, BytesAppendedByOthersAreHashedSoTheSumShowsThem) {
  transfer::PrefixHasher hasher(env_);
  auto h = hasher.start(file_);
  append(4 << 20, 4);
  hasher.advance(h, 4 << 20);
  ASSERT_TRUE(hashed_to(*h, 4 << 20));
  append(10, 5);
  auto sum = h->finish();
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(*sum, whole());
}

TEST_F(PrefixHashTest, AReadErrorAtTheEndIsAnError) {
  transfer::PrefixHasher hasher(env_);
  auto h = hasher.start(file_);
  append(1 << 20, 6);
  env_.fail_reads = 1;
  auto sum = h->finish();
  ASSERT_FALSE(sum.ok());
  EXPECT_NE(sum.error().message.find("f.part"), std::string::npos) << sum.error().message;
}

TEST_F(PrefixHashTest, ManyHashesShareTheOneThreadAndEachComesRight) {
  transfer::PrefixHasher hasher(env_);
  std::vector<std::shared_ptr<transfer::PartFile>> files;
  std::vector<std::shared_ptr<transfer::PrefixHash>> hashes;
  for (int i = 0; i < 8; ++i) {
    std::string p = dir_ / ("m" + std::to_string(i));
    int fd = ::open((p + ".part").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    std::string body((3 << 20) + i, static_cast<char>('a' + i));
    ASSERT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    files.push_back(std::make_shared<transfer::PartFile>(fd, p, nullptr));
    hashes.push_back(hasher.start(files.back()));
    hasher.advance(hashes.back(), static_cast<int64_t>(body.size()));
  }
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(hashed_to(*hashes[i], (3 << 20) + i)) << i;
    EXPECT_EQ(*hashes[i]->finish(), sum_of(files[i]->part_path())) << i;
  }
}

}  // namespace
}  // namespace fetchq::testing
