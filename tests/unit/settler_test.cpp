// Settler: finished downloads synced, sealed, renamed into place, or kept as .part with the
// reason, on real files and a real SQLite store (the settle step runs on the test's thread).
#include "queue/settler.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "support/temp_dir.h"
#include "support/watched_store.h"
#include "util/env.h"
#include "util/fs.h"

namespace fetchq::testing {
namespace {

class SettlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto inner = store::open(dir_ / "queue.db");
    ASSERT_TRUE(inner.ok());
    store_ = std::make_unique<WatchedStore>(std::move(inner.value()));
    settler_ = std::make_unique<queue::Settler>(store_.get(), util::Env::posix(), 2, [](std::vector<queue::Settling>&) {});
  }

  // A completed download of `body` into dir/name.part, as the engine hands it over: made
  // empty and written through its descriptor (fresh), or written before it was opened (a
  // resumed file).
  queue::Settling Finished(const std::string& name, const std::string& body, int64_t id,
                           bool fresh = true) {
    const std::string path = dir_ / name;
    auto folder = std::make_shared<transfer::Folder>(
        ::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), dir_.path());
    if (!fresh) write_file(path + ".part", body);
    int fd = ::open((path + ".part").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    EXPECT_GE(fd, 0);
    if (fresh) {
      EXPECT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    }
    queue::Settling s{queue::FinishedMsg{id, 1, {}}, {}, std::nullopt};
    s.f.r.outcome = transfer::Outcome::kCompleted;
    s.f.r.download_path = path;
    s.f.r.bytes = static_cast<int64_t>(body.size());
    s.f.r.file = std::make_shared<transfer::PartFile>(fd, path, folder, std::nullopt, fresh);
    return s;
  }

  TempDir dir_;
  std::unique_ptr<WatchedStore> store_;
  std::unique_ptr<queue::Settler> settler_;
};

TEST_F(SettlerTest, FilesAreRenamedIntoPlaceAfterTheirSizesAreSealed) {
  std::vector<queue::Settling> items;
  items.push_back(Finished("a", "aaa", 1));
  items.push_back(Finished("b", "bbbb", 2));
  settler_->settle(items);
  for (auto& item : items) {
    EXPECT_TRUE(item.f.renamed) << item.f.r.failure.message;
    EXPECT_EQ(item.f.r.outcome, transfer::Outcome::kCompleted);
    EXPECT_FALSE(file_exists(item.f.r.download_path + ".part"));
  }
  EXPECT_EQ(read_file(dir_ / "a"), "aaa");
  EXPECT_EQ(read_file(dir_ / "b"), "bbbb");
  EXPECT_EQ(store_->calls_from(thread_name(), "seal"), 2);
}

TEST_F(SettlerTest, WhenTheSealCannotBeCommittedTheDownloadStaysAPartToRetry) {
  std::vector<queue::Settling> items;
  items.push_back(Finished("a", "aaa", 1));
  store_->fail_anywhere("seal", 1);
  settler_->settle(items);
  EXPECT_FALSE(items[0].f.renamed);
  EXPECT_EQ(items[0].f.r.outcome, transfer::Outcome::kFailed);
  EXPECT_EQ(items[0].f.r.failure.type, "DiskError");
  EXPECT_TRUE(items[0].f.r.failure.retryable);
  EXPECT_NE(items[0].f.r.failure.message.find("cannot record the finished file"), std::string::npos);
  EXPECT_TRUE(file_exists(dir_ / "a.part"));
  EXPECT_FALSE(file_exists(dir_ / "a"));
}

// A checkpoint's data sync of the file failed during the download: its last sync here may well
// succeed (the kernel reports the error once), so the file is kept as a .part, not called whole.
// Files of the same batch without the failure are settled as usual, through one syncfs.
TEST_F(SettlerTest, AFileWhoseDataSyncFailedBeforeIsNotCalledWhole) {
  std::vector<queue::Settling> items;
  items.push_back(Finished("a", "aaa", 1));
  items.push_back(Finished("b", "bbbb", 2));
  items[0].f.r.file->sync_failed(EIO);
  settler_->settle(items);
  EXPECT_FALSE(items[0].f.renamed);
  EXPECT_EQ(items[0].f.r.outcome, transfer::Outcome::kFailed);
  EXPECT_EQ(items[0].f.r.failure.type, "DiskError");
  EXPECT_EQ(items[0].f.r.failure.message,
            "fdatasync " + (dir_ / "a.part") + ": Input/output error");
  EXPECT_TRUE(file_exists(dir_ / "a.part"));
  EXPECT_FALSE(file_exists(dir_ / "a"));
  EXPECT_TRUE(items[1].f.renamed) << items[1].f.r.failure.message;
  EXPECT_EQ(read_file(dir_ / "b"), "bbbb");
  EXPECT_EQ(store_->calls_from(thread_name(), "seal"), 1) << "only the whole file is sealed";
}

TEST_F(SettlerTest, AFileThatAppearedMeanwhileIsNotReplaced) {
  std::vector<queue::Settling> items;
  items.push_back(Finished("a", "new", 1));
  write_file(dir_ / "a", "theirs");
  settler_->settle(items);
  EXPECT_EQ(items[0].f.r.failure.type, "DestinationExists");
  EXPECT_FALSE(items[0].f.r.failure.retryable);
  EXPECT_EQ(read_file(dir_ / "a"), "theirs");
  EXPECT_EQ(read_file(dir_ / "a.part"), "new");
}

TEST_F(SettlerTest, OverwriteReplacesTheFileInPlace) {
  std::vector<queue::Settling> items;
  items.push_back(Finished("a", "new", 1));
  items[0].a.if_exists = IfExists::kOverwrite;
  write_file(dir_ / "a", "old");
  settler_->settle(items);
  EXPECT_TRUE(items[0].f.renamed);
  EXPECT_EQ(read_file(dir_ / "a"), "new");
}

TEST_F(SettlerTest, AChecksumMismatchKeepsThePartAndRetriesOnlyAResumedFile) {
  std::vector<queue::Settling> items;
  items.push_back(Finished("fresh", "abc", 1));
  items.push_back(Finished("resumed", "abc", 2));
  for (auto& item : items) item.a.sha256 = std::string(64, '0');
  items[1].a.resumed = true;
  settler_->settle(items);
  for (auto& item : items) {
    EXPECT_EQ(item.f.r.failure.type, "ChecksumMismatch");
    EXPECT_FALSE(item.f.renamed);
    EXPECT_TRUE(file_exists(item.f.r.download_path + ".part"));
  }
  EXPECT_FALSE(items[0].f.r.failure.retryable);
  EXPECT_TRUE(items[1].f.r.failure.retryable);
  EXPECT_TRUE(items[1].f.r.failure.restart_from_zero);
  EXPECT_EQ(store_->calls_from(thread_name(), "seal"), 0);
}

// Records the sync calls of the settle step, by descriptor (from the settle step's sync pool
// too: read the lists once settle() has returned).
class SyncRecordingEnv final : public util::EnvWrapper {
 public:
  SyncRecordingEnv() : util::EnvWrapper(util::Env::posix()) {}
  int syncfs(int fd) override {
    note(syncfs_fds, fd);
    return EnvWrapper::syncfs(fd);
  }
  int fdatasync(int fd) override {
    note(fdatasync_fds, fd);
    return EnvWrapper::fdatasync(fd);
  }
  int fsync(int fd) override {
    note(fsync_fds, fd);
    return EnvWrapper::fsync(fd);
  }
  std::vector<int> syncfs_fds, fdatasync_fds, fsync_fds;

 private:
  void note(std::vector<int>& calls, int fd) {
    std::lock_guard lk(mu_);
    calls.push_back(fd);
  }
  std::mutex mu_;
};

TEST_F(SettlerTest, OneSyncfsThroughTheFileOpenedFirstWritesOutTheBatch) {
  SyncRecordingEnv env;
  queue::Settler settler(store_.get(), env, 2, [](std::vector<queue::Settling>&) {});
  std::vector<queue::Settling> items;
  items.push_back(Finished("first", "1", 1));  // opened first, handed over last
  items.push_back(Finished("second", "22", 2));
  items.push_back(Finished("third", "333", 3));
  std::rotate(items.begin(), items.begin() + 1, items.end());
  const int first_fd = items.back().f.r.file->fd();
  std::vector<int> file_fds;
  for (auto& item : items) file_fds.push_back(item.f.r.file->fd());
  settler.settle(items);
  for (auto& item : items) EXPECT_TRUE(item.f.renamed) << item.f.r.failure.message;
  ASSERT_EQ(env.syncfs_fds.size(), 1u);
  EXPECT_EQ(env.syncfs_fds[0], first_fd) << "syncfs must go through the file opened first";
  auto on_files = [&](const std::vector<int>& fds) {
    return std::count_if(fds.begin(), fds.end(), [&](int fd) {
      return std::find(file_fds.begin(), file_fds.end(), fd) != file_fds.end();
    });
  };
  EXPECT_EQ(on_files(env.fsync_fds), 0) << "a file written out by syncfs needs no fsync";
  if (util::syncfs_reports_errors(first_fd)) {
    EXPECT_EQ(on_files(env.fdatasync_fds), 0) << "syncfs reported their errors already";
  } else {
    EXPECT_EQ(on_files(env.fdatasync_fds), 3) << "each file's fdatasync reports its errors";
  }
  EXPECT_EQ(env.fsync_fds.size(), 1u) << "their one folder is fsynced once";
  EXPECT_EQ(read_file(dir_ / "first"), "1");
  EXPECT_EQ(read_file(dir_ / "third"), "333");
}

TEST_F(SettlerTest, AResumedFileKeepsItsOwnCheckAfterTheSyncfs) {
  SyncRecordingEnv env;
  queue::Settler settler(store_.get(), env, 2, [](std::vector<queue::Settling>&) {});
  std::vector<queue::Settling> items;
  items.push_back(Finished("fresh", "1", 1));
  items.push_back(Finished("resumed", "22", 2, /*fresh=*/false));  // written by an earlier attempt
  const int fresh = items[0].f.r.file->fd(), resumed = items[1].f.r.file->fd();
  settler.settle(items);
  for (auto& item : items) EXPECT_TRUE(item.f.renamed) << item.f.r.failure.message;
  ASSERT_EQ(env.syncfs_fds.size(), 1u);
  EXPECT_EQ(std::count(env.fdatasync_fds.begin(), env.fdatasync_fds.end(), resumed), 1);
  EXPECT_EQ(std::count(env.fdatasync_fds.begin(), env.fdatasync_fds.end(), fresh),
            util::syncfs_reports_errors(fresh) ? 0 : 1);
}

// A folder moved away and made again between two downloads into its path: each was renamed in
// its own folder, and each folder gets its fsync.
TEST_F(SettlerTest, TwoFoldersOfOnePathAreEachFsynced) {
  SyncRecordingEnv env;
  queue::Settler settler(store_.get(), env, 2, [](std::vector<queue::Settling>&) {});
  const std::string sub = dir_ / "sub";
  auto item_in = [&](const std::string& name, const std::string& body, int64_t id) {
    auto folder = std::make_shared<transfer::Folder>(
        ::open(sub.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), sub);
    int fd = ::openat(folder->fd(), (name + ".part").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                      0644);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    queue::Settling s{queue::FinishedMsg{id, 1, {}}, {}, std::nullopt};
    s.f.r.outcome = transfer::Outcome::kCompleted;
    s.f.r.download_path = sub + "/" + name;
    s.f.r.bytes = static_cast<int64_t>(body.size());
    s.f.r.file =
        std::make_shared<transfer::PartFile>(fd, s.f.r.download_path, folder, std::nullopt, true);
    return s;
  };
  ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
  std::vector<queue::Settling> items;
  items.push_back(item_in("old", "1", 1));
  ASSERT_EQ(::rename(sub.c_str(), (dir_ / "moved").c_str()), 0);
  ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
  items.push_back(item_in("new", "22", 2));
  const int old_folder = items[0].f.r.file->folder().fd(),
            new_folder = items[1].f.r.file->folder().fd();
  settler.settle(items);
  for (auto& item : items) EXPECT_TRUE(item.f.renamed) << item.f.r.failure.message;
  EXPECT_EQ(read_file(dir_ / "moved/old"), "1");
  EXPECT_EQ(read_file(sub + "/new"), "22");
  EXPECT_EQ(std::count(env.fsync_fds.begin(), env.fsync_fds.end(), old_folder), 1)
      << "the moved folder";
  EXPECT_EQ(std::count(env.fsync_fds.begin(), env.fsync_fds.end(), new_folder), 1)
      << "the folder made again";
}

TEST_F(SettlerTest, FewerFilesThanSyncfsFromGetAnFsyncEach) {
  SyncRecordingEnv env;
  queue::Settler settler(store_.get(), env, 2, [](std::vector<queue::Settling>&) {});
  std::vector<queue::Settling> items;
  items.push_back(Finished("only", "x", 1));
  const int fd = items[0].f.r.file->fd();
  settler.settle(items);
  EXPECT_TRUE(items[0].f.renamed) << items[0].f.r.failure.message;
  EXPECT_TRUE(env.syncfs_fds.empty());
  EXPECT_EQ(std::count(env.fsync_fds.begin(), env.fsync_fds.end(), fd), 1);
}

}  // namespace
}  // namespace fetchq::testing
