// Callbacks off the transfer and durability paths, so a slow callback stalls no download.
#include "queue/callback_runner.h"
#include "util/thread_name.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace fetchq::queue {

CallbackRunner::CallbackRunner()
    : thread_([this] {
        util::name_this_thread("fetchq-callback");
        run();
      }) {}

CallbackRunner::~CallbackRunner() {
  {
    std::lock_guard lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CallbackRunner::post(std::function<void()> fn) {
  {
    std::lock_guard lk(mu_);
    tasks_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

void CallbackRunner::drain() {
  std::unique_lock lk(mu_);
  idle_cv_.wait(lk, [this] { return tasks_.empty() && !busy_; });
}

void CallbackRunner::run() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return quit_ || !tasks_.empty(); });
    if (tasks_.empty() && quit_) return;
    auto fn = std::move(tasks_.front());
    tasks_.pop_front();
    busy_ = true;
    lk.unlock();
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("a callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("a callback threw a non-standard exception");
    }
    lk.lock();
    busy_ = false;
    if (tasks_.empty()) idle_cv_.notify_all();
  }
}

}  // namespace fetchq::queue
