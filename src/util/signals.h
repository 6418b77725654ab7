// Signals taken synchronously: block them in the calling thread before any other thread starts
// (threads inherit the mask), then poll them with sigtimedwait. Used by fetchq and fetchqd.
#pragma once

#include <signal.h>

#include <initializer_list>

namespace fetchq::util {

// Blocks `signals` in the calling thread (and so in every thread it starts afterwards) and
// returns them as a set for sigtimedwait/sigwaitinfo.
inline sigset_t block_signals(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// True when one of `set` is pending (and takes it), without waiting.
inline bool take_pending_signal(const sigset_t& set) {
  timespec zero{0, 0};
  return sigtimedwait(&set, nullptr, &zero) > 0;
}

}  // namespace fetchq::util
