// Callbacks off the transfer and durability paths, so a slow callback stalls no download.
#include "queue/callback_runner.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace fetchq::queue {

void CallbackRunner::run_all(std::vector<std::function<void()>>& callbacks) {
  for (auto& fn : callbacks) {
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("a callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("a callback threw a non-standard exception");
    }
  }
}

}  // namespace fetchq::queue
