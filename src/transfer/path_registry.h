// PathRegistry: the download paths live jobs write, so two never write the same file.
#pragma once

#include <mutex>
#include <set>
#include <string>

namespace fetchq::transfer {

class PathRegistry {
 public:
  // False when another live job holds the path.
  bool claim(const std::string& path) {
    std::lock_guard lk(mu_);
    return paths_.insert(path).second;
  }
  void release(const std::string& path) {
    std::lock_guard lk(mu_);
    paths_.erase(path);
  }
  bool held(const std::string& path) {
    std::lock_guard lk(mu_);
    return paths_.count(path) != 0;
  }

 private:
  std::mutex mu_;
  std::set<std::string> paths_;
};

}  // namespace fetchq::transfer
