// LoopInbox: what reaches the queue's loop thread, from every other thread.
//
// The transfer thread posts its reports, the settle thread hands back settled files, API
// callers post commands (user decisions that must be ordered with the loop's own work) and
// wake it. The lock guards only the lists below and is never held across I/O: posting never
// waits for SQLite or a disk. The loop takes everything at once with wait().
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

#include "queue/checked_mutex.h"
#include "queue/messages.h"
#include "util/clock.h"

namespace fetchq::queue {

class LoopInbox {
 public:
  using Clock = util::SteadyClock;

  void post(Msg m) {
    {
      std::lock_guard lk(mu_);
      msgs_.push_back(std::move(m));
    }
    cv_.notify_one();
  }

  void wake() {
    {
      std::lock_guard lk(mu_);
      wake_ = true;
    }
    cv_.notify_one();
  }

  // Queues fn for the loop thread. False once the loop has ended: the caller runs it itself.
  bool post_command(std::function<void()> fn) {
    {
      std::lock_guard lk(mu_);
      if (ended_) return false;
      commands_.push_back(std::move(fn));
    }
    cv_.notify_one();
    return true;
  }

  // n files went to the settle (or checkpoint) thread; the loop does not end before they are
  // back.
  void add_settling(size_t n) {
    std::lock_guard lk(mu_);
    settling_ += n;
  }

  // Settled files back from the settle thread, as messages for the loop.
  void return_settled(std::vector<Settling>& items) {
    {
      std::lock_guard lk(mu_);
      for (auto& item : items) {
        item.f.settled = true;
        msgs_.push_back(std::move(item.f));
      }
      settling_ -= items.size();
    }
    cv_.notify_one();
  }

  // Checkpoints back from the checkpoint thread, each marked whether its .part was synced.
  void return_synced(std::vector<CheckpointMsg>& done) {
    {
      std::lock_guard lk(mu_);
      for (auto& m : done) {
        m.returned = true;
        msgs_.push_back(std::move(m));
      }
      settling_ -= done.size();
    }
    cv_.notify_one();
  }

  // The loop ends once nothing is left to take and nothing is with the settle thread.
  void quit() {
    {
      std::lock_guard lk(mu_);
      quit_ = true;
    }
    cv_.notify_one();
  }

  struct Batch {
    std::vector<Msg> msgs;
    std::vector<std::function<void()>> commands;
    bool end = false;  // quit and nothing left: the loop returns, commands run inline from now
  };

  // Loop thread: waits until something arrived, a wake, the end, or `until`.
  Batch wait(Clock::time_point until) {
    Batch b;
    std::unique_lock lk(mu_);
    auto ready = [&] {
      return !msgs_.empty() || !commands_.empty() || wake_ || (quit_ && settling_ == 0);
    };
    cv_.wait_until(lk, until, ready);
    if (quit_ && msgs_.empty() && commands_.empty() && settling_ == 0) {
      ended_ = true;
      b.end = true;
      return b;
    }
    wake_ = false;
    b.msgs.swap(msgs_);
    b.commands.swap(commands_);
    return b;
  }

 private:
  CheckedMutex mu_;
  std::condition_variable_any cv_;
  std::vector<Msg> msgs_;
  std::vector<std::function<void()>> commands_;
  bool wake_ = true;
  bool quit_ = false;
  bool ended_ = false;
  size_t settling_ = 0;
};

}  // namespace fetchq::queue
