// The real file system's calls (util::Env::posix()) where fetchq adds to what the kernel does:
// naming an unnamed .part. Real files in a temp folder, no network.
#include "util/env.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "support/temp_dir.h"

namespace fetchq::testing {
namespace {

using util::Env;

// An unnamed file in `dir` holding `bytes`; -1 where the file system has no O_TMPFILE.
int unnamed_with(Env& env, int dir, const std::string& bytes) {
  int fd = env.open_unnamed(dir, "x", 0644);
  if (fd < 0) return -1;
  if (env.write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
    env.close(fd);
    return -1;
  }
  return fd;
}

class PosixEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::open(tmp_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dir_, 0);
    int probe = env_.open_unnamed(dir_, "probe", 0644);
    if (probe < 0) GTEST_SKIP() << "no unnamed files here (O_TMPFILE or /proc missing)";
    env_.close(probe);
  }
  void TearDown() override {
    if (dir_ >= 0) ::close(dir_);
  }

  TempDir tmp_;
  Env& env_ = Env::posix();
  int dir_ = -1;
};

TEST_F(PosixEnvTest, NamesAnUnnamedFileWithTheBytesWrittenToIt) {
  int fd = unnamed_with(env_, dir_, "sixteen bytes...");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(env_.link_unnamed(fd, dir_, "a.part"), 0) << strerror(errno);
  struct stat open_st {
  }, named_st{};
  ASSERT_EQ(::fstat(fd, &open_st), 0);
  ASSERT_EQ(::stat((tmp_ / "a.part").c_str(), &named_st), 0);
  EXPECT_EQ(open_st.st_ino, named_st.st_ino);
  EXPECT_EQ(read_file(tmp_ / "a.part"), "sixteen bytes...");
  env_.close(fd);
}

TEST_F(PosixEnvTest, NeverReplacesAFileThatHasTheName) {
  write_file(tmp_ / "a.part", "the user's own");
  int fd = unnamed_with(env_, dir_, "downloaded");
  ASSERT_GE(fd, 0);
  errno = 0;
  EXPECT_EQ(env_.link_unnamed(fd, dir_, "a.part"), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(read_file(tmp_ / "a.part"), "the user's own");
  env_.close(fd);
}

TEST_F(PosixEnvTest, AFolderRemovedMeanwhileFailsThatNameOnlyAndLaterOnesWork) {
  const std::string gone = tmp_ / "gone";
  ASSERT_EQ(::mkdir(gone.c_str(), 0755), 0);
  int gone_fd = ::open(gone.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(gone_fd, 0);
  int fd = unnamed_with(env_, gone_fd, "lost");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::rmdir(gone.c_str()), 0);
  errno = 0;
  EXPECT_EQ(env_.link_unnamed(fd, gone_fd, "a.part"), -1);
  EXPECT_EQ(errno, ENOENT);
  env_.close(fd);
  ::close(gone_fd);
  // The failure said nothing about how names are made: the next file is named as before.
  int next = unnamed_with(env_, dir_, "kept");
  ASSERT_GE(next, 0);
  ASSERT_EQ(env_.link_unnamed(next, dir_, "b.part"), 0) << strerror(errno);
  EXPECT_EQ(read_file(tmp_ / "b.part"), "kept");
  env_.close(next);
}

// linkat(AT_EMPTY_PATH) names a file for a caller without CAP_DAC_READ_SEARCH only from Linux
// 6.10 on, and only one the caller opened with the credentials it has now: otherwise the name
// is made another way. A child becomes nobody (keeping root as its saved user), opens the file,
// then gives up root for good, which changes its credentials, and names the file.
TEST_F(PosixEnvTest, NamesAFileForAnUnprivilegedProcessWhoseCredentialsChanged) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to change credentials";
  const std::string shared = tmp_ / "shared";
  ASSERT_EQ(::mkdir(shared.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 0777), 0);  // whatever the umask
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int d = ::open(shared.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0 || ::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 0) != 0)
      ::_exit(2);
    int fd = unnamed_with(Env::posix(), d, "as nobody");
    if (fd < 0) ::_exit(3);
    if (::setresuid(65534, 65534, 65534) != 0) ::_exit(4);
    ::prctl(PR_SET_DUMPABLE, 1);  // /proc/self/fd stays this process's own to read
    ::_exit(Env::posix().link_unnamed(fd, d, "a.part") == 0 ? 0 : 10 + errno % 100);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "exit 10 + errno: " << WEXITSTATUS(status);
  EXPECT_EQ(read_file(shared + "/a.part"), "as nobody");
}

}  // namespace
}  // namespace fetchq::testing
