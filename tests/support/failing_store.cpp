#include "support/failing_store.h"

#include <string>

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

void FailingStore::around(store::StoreOp op, const Body& body) {
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
