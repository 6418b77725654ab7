// Placement of an attempt on a file system that fails on demand (support/fault_env.h): real
// files in a temp folder, no network, no root.
#include "transfer/placement.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "files/file_name.h"
#include "support/fault_env.h"
#include "support/temp_dir.h"

namespace fetchq::testing {
namespace {

using transfer::PartIdentity;
using transfer::Placement;

// Records the identities the placer sends to be made durable; the test answers with
// Placer::recorded, as the engine does with the queue's answer.
class RecordingObserver final : public transfer::Observer {
 public:
  void on_started(int64_t, int, const transfer::Started&) override {}
  void on_progress(int64_t, int, int64_t, int64_t, std::vector<transfer::SegmentSpan>) override {}
  void on_checkpoint(int64_t, int, std::shared_ptr<transfer::PartFile>, int64_t,
                     std::vector<transfer::SegmentSpan>) override {}
  void on_finished(int64_t, int, transfer::Result) override {}
  void on_part_created(int64_t, int, const std::string&, const PartIdentity& id) override {
    created.push_back(id);
    if (on_record) on_record();
  }
  std::vector<PartIdentity> created;
  std::function<void()> on_record;  // runs as the identity is sent to be recorded
};

class PlacementTest : public ::testing::Test {
 protected:
  TempDir dir_;
  FaultEnv env_;
  transfer::PathRegistry paths_;
  RecordingObserver observer_;
  transfer::Placer placer_{env_, &paths_, &observer_};

  Placement attempt(const std::string& name) {
    Placement t;
    t.req.job_id = 1;
    t.req.attempt = 1;
    t.req.url = "http://example.invalid/" + name;
    t.req.dest = dir_ / name;
    t.req.download_path = dir_ / name;
    return t;
  }
};

// One clear line: the step, the file and the cause.
void expect_one_line(const transfer::Failure& f, const std::string& type,
                     const std::string& starts) {
  EXPECT_EQ(f.type, type) << f.message;
  EXPECT_EQ(f.message.find('\n'), std::string::npos) << f.message;
  EXPECT_EQ(f.message.rfind(starts, 0), 0u) << f.message;
}

TEST_F(PlacementTest, AFreshPartIsCreatedLockedAndItsIdentityRecorded) {
  auto t = attempt("a.bin");
  placer_.place(t);
  ASSERT_FALSE(t.failure) << t.failure->message;
  ASSERT_TRUE(t.file);
  EXPECT_TRUE(t.path_held);
  EXPECT_TRUE(t.record_pending);
  EXPECT_EQ(t.download_path, dir_ / "a.bin");
  ASSERT_EQ(observer_.created.size(), 1u);
  placer_.recorded(t, true);
  ASSERT_FALSE(t.failure) << t.failure->message;
  EXPECT_FALSE(t.record_pending);
  ASSERT_TRUE(t.file);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "a.bin.part").c_str(), &st), 0);
  EXPECT_EQ(observer_.created[0].ino, static_cast<uint64_t>(st.st_ino));
  EXPECT_EQ(env_.calls(FsOp::kLock, "a.bin.part"), 1);
}

TEST_F(PlacementTest, ADiskFullAtCreateIsADiskFullFailureAndThePathIsFreed) {
  env_.add({.op = FsOp::kOpen, .path_contains = "b.bin.part", .err = ENOSPC});
  auto t = attempt("b.bin");
  placer_.place(t);
  ASSERT_TRUE(t.failure);
  expect_one_line(*t.failure, "DiskFull",
                  "create " + dir_ / "b.bin.part" + ": No space left on device");
  EXPECT_TRUE(t.failure->disk);
  EXPECT_FALSE(t.failure->retryable);
  EXPECT_FALSE(t.file);
  EXPECT_FALSE(paths_.held(dir_ / "b.bin")) << "a failed attempt still holds its path";
  EXPECT_FALSE(file_exists(dir_ / "b.bin.part"));
  EXPECT_TRUE(observer_.created.empty());
}

TEST_F(PlacementTest, APartLockedByAnotherProcessIsARetryableConflict) {
  env_.add({.op = FsOp::kLock, .path_contains = "c.bin.part", .err = EWOULDBLOCK});
  auto t = attempt("c.bin");
  placer_.place(t);
  ASSERT_TRUE(t.failure);
  expect_one_line(*t.failure, "DestinationExists",
                  "another process is writing " + dir_ / "c.bin.part");
  EXPECT_TRUE(t.failure->retryable);
  EXPECT_FALSE(t.failure->disk);
  EXPECT_FALSE(paths_.held(dir_ / "c.bin"));
}

TEST_F(PlacementTest, AnIoErrorWhileCuttingTheOwnPartBackIsADiskError) {
  auto first = attempt("d.bin");
  placer_.place(first);
  placer_.recorded(first, true);
  ASSERT_FALSE(first.failure) << first.failure->message;
  ASSERT_EQ(observer_.created.size(), 1u);
  ASSERT_EQ(::write(first.file->fd(), "0123456789", 10), 10);
  first.file.reset();  // the lock goes with the descriptor
  paths_.release(first.download_path);

  env_.add({.op = FsOp::kTruncate, .path_contains = "d.bin.part", .err = EIO});
  auto t = attempt("d.bin");
  t.req.attempt = 2;
  t.req.part_identity = observer_.created[0];
  t.req.offset = 5;
  placer_.place(t);
  ASSERT_TRUE(t.failure);
  expect_one_line(*t.failure, "DiskError",
                  "truncate " + dir_ / "d.bin.part" + ": Input/output error");
  EXPECT_EQ(read_file(dir_ / "d.bin.part"), "0123456789") << "the kept bytes were touched";

  env_.clear();  // without the fault, the same attempt keeps the 5 bytes promised
  paths_.release(t.download_path);
  auto again = attempt("d.bin");
  again.req.part_identity = observer_.created[0];
  again.req.offset = 5;
  placer_.place(again);
  ASSERT_FALSE(again.failure) << again.failure->message;
  EXPECT_EQ(again.offset, 5);
  EXPECT_EQ(read_file(dir_ / "d.bin.part"), "01234");
  EXPECT_EQ(observer_.created.size(), 1u) << "the job's own .part was replaced";
}

// The record is answered after the file was written to: bytes in a file that is let go are no
// longer the attempt's, and nothing of it is left on disk.
TEST_F(PlacementTest, APartWhoseIdentityCannotBeRecordedIsLetGo) {
  auto t = attempt("e.bin");
  placer_.place(t);
  ASSERT_FALSE(t.failure) << t.failure->message;
  ASSERT_TRUE(t.file);
  ASSERT_EQ(::write(t.file->fd(), "0123456789", 10), 10);
  t.on_disk = 10;
  placer_.recorded(t, false);
  ASSERT_TRUE(t.failure);
  expect_one_line(*t.failure, "DiskError", "cannot record " + dir_ / "e.bin.part");
  EXPECT_FALSE(t.file);
  EXPECT_EQ(t.on_disk, 0);
  EXPECT_FALSE(file_exists(dir_ / "e.bin.part"));
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path())) << "the unrecorded file left a name";
}

// Where a file cannot be made without a name, the name it was made with goes with it.
TEST_F(PlacementTest, ANamedPartWhoseIdentityCannotBeRecordedIsRemoved) {
  env_.add({.op = FsOp::kOpen, .path_contains = "n.bin.part", .times = 1, .err = EOPNOTSUPP});
  auto t = attempt("n.bin");
  placer_.place(t);
  ASSERT_FALSE(t.failure) << t.failure->message;
  EXPECT_TRUE(file_exists(dir_ / "n.bin.part")) << "the fallback makes the file with its name";
  placer_.recorded(t, false);
  ASSERT_TRUE(t.failure);
  EXPECT_EQ(t.failure->type, "DiskError");
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path())) << "the unrecorded file left a name";
}

// The .part gets its name only once its identity is recorded: a kill -9 between the two left,
// before, an empty .part that the next attempt called foreign (DestinationExists), failing the
// job. Here the record is sent first, the name waits for its answer, and a name taken meanwhile
// is left alone.
TEST_F(PlacementTest, ThePartIsNamedOnlyAfterItsIdentityIsRecorded) {
  bool named_when_recorded = true;
  observer_.on_record = [&] { named_when_recorded = file_exists(dir_ / "f.bin.part"); };
  auto t = attempt("f.bin");
  placer_.place(t);
  ASSERT_FALSE(t.failure) << t.failure->message;
  EXPECT_FALSE(named_when_recorded) << "the .part had its name before the job recorded it";
  EXPECT_FALSE(file_exists(dir_ / "f.bin.part")) << "named before the record was answered";
  ASSERT_EQ(::write(t.file->fd(), "abc", 3), 3);
  placer_.recorded(t, true);
  ASSERT_FALSE(t.failure) << t.failure->message;
  EXPECT_EQ(read_file(dir_ / "f.bin.part"), "abc");
  struct stat sb {};
  ASSERT_EQ(::stat((dir_ / "f.bin.part").c_str(), &sb), 0);
  ASSERT_EQ(observer_.created.size(), 1u);
  EXPECT_EQ(observer_.created[0].ino, static_cast<uint64_t>(sb.st_ino));
  EXPECT_EQ(sb.st_nlink, 1u);
}

TEST_F(PlacementTest, ANameTakenBetweenRecordAndNamingIsLeftAlone) {
  auto t = attempt("g.bin");
  t.req.if_exists = IfExists::kError;
  placer_.place(t);
  ASSERT_FALSE(t.failure) << t.failure->message;
  write_file(dir_ / "g.bin.part", "someone else's");
  placer_.recorded(t, true);
  ASSERT_TRUE(t.failure);
  EXPECT_EQ(t.failure->type, "DestinationExists");
  EXPECT_TRUE(t.failure->retryable) << "the next attempt picks a name again";
  EXPECT_FALSE(t.file);
  EXPECT_EQ(read_file(dir_ / "g.bin.part"), "someone else's");
}

// A .part already there is found before anything is made: a numbered name where if-exists
// allows one, else DestinationExists; the other file is never touched.
TEST_F(PlacementTest, APartAlreadyThereIsFoundBeforeAFileIsMade) {
  write_file(dir_ / "h.bin.part", "not the job's");
  auto t = attempt("h.bin");
  t.req.download_path.reset();
  t.req.if_exists = IfExists::kRename;
  ASSERT_TRUE(placer_.settle_path(t, dir_ / "h.bin")) << t.failure->message;
  EXPECT_EQ(t.download_path, dir_ / files::numbered_file_name("h.bin", 1));
  placer_.recorded(t, true);
  ASSERT_FALSE(t.failure) << t.failure->message;
  EXPECT_TRUE(file_exists(t.download_path + ".part"));

  auto e = attempt("h.bin");
  e.req.attempt = 2;
  e.req.download_path.reset();
  e.req.if_exists = IfExists::kError;
  EXPECT_FALSE(placer_.settle_path(e, dir_ / "h.bin"));
  ASSERT_TRUE(e.failure);
  EXPECT_EQ(e.failure->type, "DestinationExists");
  EXPECT_EQ(observer_.created.size(), 1u) << "a file was made for a taken name";
  EXPECT_EQ(read_file(dir_ / "h.bin.part"), "not the job's");
}

}  // namespace
}  // namespace fetchq::testing
