// Child processes for end-to-end tests: start the real binaries, signal them, reap them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace fetchq::testing {

class Process {
 public:
  // Starts argv[0] with argv; stdout and stderr go to the given files ("" for /dev/null).
  Process(const std::vector<std::string>& argv, const std::string& stdout_path = "",
          const std::string& stderr_path = "", const std::vector<std::string>& env = {});
  ~Process();  // SIGKILLs and reaps a child still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Exit status (128+signal when killed), or -1 if it did not end within timeout.
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  bool running();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

std::string bin_path(const std::string& name);  // the built fetchq or fetchqd

struct CliResult {
  int rc = -1;  // as Process::wait
  std::string out;
  std::string err;
};
// Runs argv to its end (or the timeout), its output kept in out_path and err_path and returned.
CliResult run_capture(const std::vector<std::string>& argv, const std::string& out_path,
                      const std::string& err_path, std::chrono::milliseconds timeout);

// A connected Unix stream socket to path, or -1.
int connect_unix(const std::string& path);
// Sends all of data; false when the peer is gone.
bool send_all(int fd, const std::string& data);

}  // namespace fetchq::testing
