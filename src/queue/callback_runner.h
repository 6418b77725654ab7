// CallbackRunner: runs user callbacks on a thread of their own; a throwing one is logged.
#pragma once

#include <functional>
#include <vector>

#include "queue/worker.h"

namespace fetchq::queue {

class CallbackRunner {
 public:
  // The destructor runs what is queued, then joins.
  void post(std::function<void()> fn) { worker_.post(std::move(fn)); }
  void drain() { worker_.drain(); }  // blocks until everything posted so far has run

 private:
  static void run_all(std::vector<std::function<void()>>& callbacks);
  Worker<std::function<void()>> worker_{"fetchq-callback", run_all};
};

}  // namespace fetchq::queue
