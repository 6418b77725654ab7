// CheckedMutex: a std::mutex that counts, per thread, how many of the queue's locks are held.
//
// The queue's rule is that none of its locks is held across store I/O or a blocking syscall
// (so the transfer thread, which takes them to post a message, never waits on SQLite). A store
// wrapper in the tests asks queue_locks_held() on every call: any count above zero is a breach.
// Use with std::condition_variable_any.
#pragma once

#include <mutex>

namespace fetchq::queue {

namespace detail {
inline thread_local int queue_locks_held = 0;
}

// How many CheckedMutexes the calling thread holds now.
inline int queue_locks_held() { return detail::queue_locks_held; }

class CheckedMutex {
 public:
  void lock() {
    mu_.lock();
    ++detail::queue_locks_held;
  }
  bool try_lock() {
    if (!mu_.try_lock()) return false;
    ++detail::queue_locks_held;
    return true;
  }
  void unlock() {
    --detail::queue_locks_held;
    mu_.unlock();
  }

 private:
  std::mutex mu_;
};

}  // namespace fetchq::queue
