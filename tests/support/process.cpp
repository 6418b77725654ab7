// Child processes for end-to-end tests.
#include "support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "support/temp_dir.h"

namespace fetchq::testing {

// The child is started with posix_spawn, and everything it needs (argv, environment, the
// redirections) is built before: a child forked from this multi-threaded process may run no
// allocator, whose locks another thread can hold at the fork (seen as a child that hangs forever
// under ASan).
Process::Process(const std::vector<std::string>& argv, const std::string& stdout_path,
                 const std::string& stderr_path, const std::vector<std::string>& env) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The environment: this process's, then each NAME=VALUE of env in turn in place of NAME's
  // entry (a later one of the same NAME wins, as with putenv).
  auto name_of = [](const char* kv) { return std::string_view(kv, std::strcspn(kv, "=")); };
  std::vector<char*> envp;
  auto set = [&](char* kv) {
    auto same = std::find_if(envp.begin(), envp.end(),
                             [&](const char* e) { return name_of(e) == name_of(kv); });
    if (same != envp.end()) {
      *same = kv;
    } else {
      envp.push_back(kv);
    }
  };
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  for (const auto& kv : env) set(const_cast<char*>(kv.c_str()));
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  if (::posix_spawn_file_actions_init(&actions) != 0) throw std::runtime_error("spawn failed");
  const int flags = O_WRONLY | O_CREAT | O_TRUNC;
  int rc = ::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (rc == 0) {
    rc = ::posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO,
                                            stdout_path.empty() ? "/dev/null" : stdout_path.c_str(),
                                            flags, 0644);
  }
  if (rc == 0) {
    rc = ::posix_spawn_file_actions_addopen(&actions, STDERR_FILENO,
                                            stderr_path.empty() ? "/dev/null" : stderr_path.c_str(),
                                            flags, 0644);
  }
  // An output file that cannot be opened fails the start as a program that cannot run does.
  if (rc == 0) rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), envp.data());
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {  // as a shell says of a program it cannot run
    pid_ = -1;
    reaped_ = true;
    status_ = 127;
  }
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
}

void Process::signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

bool Process::running() {
  if (reaped_) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

int Process::wait(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return status_;
}

CliResult run_capture(const std::vector<std::string>& argv, const std::string& out_path,
                      const std::string& err_path, std::chrono::milliseconds timeout) {
  CliResult r;
  {
    Process p(argv, out_path, err_path);
    r.rc = p.wait(timeout);
  }
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

std::string bin_path(const std::string& name) { return std::string(FETCHQ_BIN_DIR) + "/" + name; }

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace fetchq::testing
