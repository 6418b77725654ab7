// TempDir: a fresh folder per test, removed afterwards; and small file helpers for tests.
#pragma once

#include <string>

namespace fetchq::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);
bool file_exists(const std::string& path);
// Runs a shell command line; returns its exit status (or -1), with its standard output in *out.
int run_command(const std::string& cmd, std::string* out = nullptr);

}  // namespace fetchq::testing
