// Worker: one named thread that handles, in the order posted, what other threads post to it.
//
// The handler gets everything posted since its last turn at once (a batch), with no lock
// held: posting never waits for the handler's work. The queue's callback thread and its settle
// thread are Workers.
#pragma once

#include <condition_variable>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "queue/checked_mutex.h"
#include "util/thread_name.h"

namespace fetchq::queue {

template <typename T>
class Worker {
 public:
  using Handler = std::function<void(std::vector<T>&)>;

  // Starts the thread, named `name` (at most 15 characters show).
  Worker(std::string name, Handler handle) : handle_(std::move(handle)) {
    thread_ = std::thread([this, name = std::move(name)] {
      util::name_this_thread(name.c_str());
      run();
    });
  }
  ~Worker() { stop(); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void post(T item) {
    {
      std::lock_guard lk(mu_);
      inbox_.push_back(std::move(item));
    }
    cv_.notify_one();
  }

  void post_all(std::vector<T> items) {
    {
      std::lock_guard lk(mu_);
      for (auto& item : items) inbox_.push_back(std::move(item));
    }
    cv_.notify_one();
  }

  // Blocks until everything posted so far has been handled. Not from the worker's own thread.
  void drain() {
    std::unique_lock lk(mu_);
    idle_cv_.wait(lk, [this] { return inbox_.empty() && !busy_; });
  }

  // Handles what was posted, then joins the thread. Idempotent.
  void stop() {
    {
      std::lock_guard lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    for (;;) {
      std::vector<T> batch;
      {
        std::unique_lock lk(mu_);
        busy_ = false;
        if (inbox_.empty()) idle_cv_.notify_all();
        cv_.wait(lk, [this] { return quit_ || !inbox_.empty(); });
        if (inbox_.empty()) return;
        batch.swap(inbox_);
        busy_ = true;
      }
      handle_(batch);
    }
  }

  Handler handle_;
  CheckedMutex mu_;
  std::condition_variable_any cv_;
  std::condition_variable_any idle_cv_;
  std::vector<T> inbox_;  // under mu_
  bool busy_ = false;     // under mu_: a batch is being handled
  bool quit_ = false;     // under mu_
  std::thread thread_;
};

}  // namespace fetchq::queue
