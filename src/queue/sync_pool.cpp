// The parallel fsync helper of the durability path.
#include "queue/sync_pool.h"
#include "util/thread_name.h"

namespace fetchq::queue {

SyncPool::SyncPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] {
    util::name_this_thread("fetchq-sync");
    work();
  });
}

SyncPool::~SyncPool() {
  {
    std::lock_guard lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

// Takes the next task of the current batch, if any, and runs it with the lock released.
bool SyncPool::take_and_run(std::unique_lock<std::mutex>& lk) {
  if (!tasks_ || next_ >= tasks_->size()) return false;
  auto& task = (*tasks_)[next_++];
  ++running_;
  lk.unlock();
  task();
  lk.lock();
  --running_;
  if (next_ >= tasks_->size() && running_ == 0) done_cv_.notify_all();
  return true;
}

void SyncPool::work() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return quit_ || (tasks_ && next_ < tasks_->size()); });
    if (quit_) return;
    take_and_run(lk);
  }
}

void SyncPool::run(std::vector<std::function<void()>>& tasks) {
  if (tasks.empty()) return;
  if (tasks.size() == 1 || threads_.empty()) {
    for (auto& t : tasks) t();
    return;
  }
  std::unique_lock lk(mu_);
  tasks_ = &tasks;
  next_ = 0;
  cv_.notify_all();
  while (take_and_run(lk)) {
  }
  done_cv_.wait(lk, [this] { return next_ >= tasks_->size() && running_ == 0; });
  tasks_ = nullptr;
}

}  // namespace fetchq::queue
