// FailingStore: a real store that throws StoreError on demand, for fault-injection tests.
//
// Wraps the store it is given and passes every call through, except that the next `times`
// calls of a chosen method throw StoreError(kind) instead of reaching it (nothing is written,
// as when the backend gives up before its commit). Thread-safe: the queue calls it from its
// loop, settle and transfer threads while the test arms it.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>

#include "store/forwarding_store.h"

namespace fetchq::testing {

class FailingStore final : public store::ForwardingStore {
 public:
  explicit FailingStore(std::unique_ptr<store::Store> inner) : ForwardingStore(std::move(inner)) {}

  // The next `times` calls of op throw StoreError(kind); adds to what is already armed.
  void fail(store::StoreOp op, store::StoreErrorKind kind, int times = 1);
  // How many calls of op have thrown so far.
  int failed(store::StoreOp op) const;
  // How many armed failures of op are still to come.
  int pending(store::StoreOp op) const;
  // Every later call of op waits this long before it goes through (a slow disk under the
  // store, or a window for something else to happen first); 0 ends it.
  void slow(store::StoreOp op, std::chrono::milliseconds delay);

 protected:
  void around(store::StoreOp op, const Body& body) override;

 private:
  struct Plan {
    store::StoreErrorKind kind = store::StoreErrorKind::kOther;
    int left = 0;
    int thrown = 0;
  };
  mutable std::mutex mu_;
  std::map<store::StoreOp, Plan> plans_;
  std::map<store::StoreOp, std::chrono::milliseconds> delays_;
};

}  // namespace fetchq::testing
