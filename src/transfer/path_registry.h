// PathRegistry: the download paths live jobs write, so two never write the same file. A claim
// of a path holds both it and its .part: no job may take another live job's .part as its final
// name (a final name "x.part" is refused while a job writes x), nor the reverse.
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
    const std::string part = path + ".part";
    if (paths_.count(path) != 0 || paths_.count(part) != 0) return false;
    paths_.insert(path);
    paths_.insert(part);
    return true;
  }
  void release(const std::string& path) {
    std::lock_guard lk(mu_);
    paths_.erase(path);
    paths_.erase(path + ".part");
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
