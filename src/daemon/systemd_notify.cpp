// sd_notify through libsystemd when it is there at build time.
#include "daemon/systemd_notify.h"

#ifdef FETCHQ_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace fetchq::daemon {

#ifdef FETCHQ_HAVE_SYSTEMD
Notifier::Notifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) interval_ = std::chrono::milliseconds(usec / 2000);
}
void Notifier::ready() { sd_notify(0, "READY=1"); }
void Notifier::status(const std::string& text) { sd_notifyf(0, "STATUS=%s", text.c_str()); }
void Notifier::watchdog() {
  if (interval_.count() > 0) sd_notify(0, "WATCHDOG=1");
}
void Notifier::stopping() { sd_notify(0, "STOPPING=1"); }
#else
Notifier::Notifier() = default;
void Notifier::ready() {}
void Notifier::status(const std::string&) {}
void Notifier::watchdog() {}
void Notifier::stopping() {}
#endif

}  // namespace fetchq::daemon
