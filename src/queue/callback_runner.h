// CallbackRunner: runs user callbacks on a thread of their own; a throwing one is logged.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace fetchq::queue {

class CallbackRunner {
 public:
  CallbackRunner();
  ~CallbackRunner();  // runs what is queued, then joins
  void post(std::function<void()> fn);
  void drain();  // blocks until everything posted so far has run

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> tasks_;
  bool busy_ = false;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace fetchq::queue
