// SyncPool: a few threads that run a batch of blocking file-system calls (fsync) side by side.
//
// fsyncs of different files overlap well on real disks, so a batch of completed downloads is
// synced in parallel rather than one after another. run() blocks until the whole batch is done.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fetchq::queue {

class SyncPool {
 public:
  explicit SyncPool(int threads);
  ~SyncPool();
  SyncPool(const SyncPool&) = delete;
  SyncPool& operator=(const SyncPool&) = delete;

  // Runs every task, on the pool and on the calling thread, and returns when all are done.
  void run(std::vector<std::function<void()>>& tasks);

 private:
  void work();
  bool take_and_run(std::unique_lock<std::mutex>& lk);

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::vector<std::function<void()>>* tasks_ = nullptr;
  size_t next_ = 0;
  size_t running_ = 0;
  bool quit_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace fetchq::queue
