#include "support/failing_store.h"

#include <string>
#include <thread>

namespace fetchq::testing {

void FailingStore::fail(store::StoreOp op, store::StoreErrorKind kind, int times) {
  std::lock_guard lk(mu_);
  auto& p = plans_[op];
  p.kind = kind;
  p.left += times;
}

int FailingStore::failed(store::StoreOp op) const {
  std::lock_guard lk(mu_);
  auto it = plans_.find(op);
  return it == plans_.end() ? 0 : it->second.thrown;
}

int FailingStore::pending(store::StoreOp op) const {
  std::lock_guard lk(mu_);
  auto it = plans_.find(op);
  return it == plans_.end() ? 0 : it->second.left;
}

void FailingStore::slow(store::StoreOp op, std::chrono::milliseconds delay) {
  std::lock_guard lk(mu_);
  delays_[op] = delay;
}

void FailingStore::around(store::StoreOp op, const Body& body) {
  std::chrono::milliseconds delay{0};
  {
    std::lock_guard lk(mu_);
    if (auto d = delays_.find(op); d != delays_.end()) delay = d->second;
  }
  if (delay.count() > 0) std::this_thread::sleep_for(delay);  // not under mu_
  {
    std::lock_guard lk(mu_);
    auto it = plans_.find(op);
    if (it != plans_.end() && it->second.left > 0) {
      --it->second.left;
      ++it->second.thrown;
      throw store::StoreError(it->second.kind, "injected " +
                                                   std::string(to_string(it->second.kind)) +
                                                   " error in " + std::string(to_string(op)));
    }
  }
  body();
}

}  // namespace fetchq::testing
