// Notifier: sd_notify READY, STATUS, WATCHDOG and STOPPING when run by systemd; no-ops otherwise.
#pragma once

#include <chrono>
#include <string>

namespace fetchq::daemon {

class Notifier {
 public:
  Notifier();
  void ready();
  void status(const std::string& text);
  void watchdog();
  void stopping();
  // Half the watchdog period systemd asked for, or zero when it asked for none.
  std::chrono::milliseconds watchdog_interval() const { return interval_; }

 private:
  std::chrono::milliseconds interval_{0};
};

}  // namespace fetchq::daemon
