// Names the calling thread, so `top -H`, `ps -L` and gdb tell fetchq's threads apart.
#pragma once

#include <pthread.h>

namespace fetchq::util {

// name: at most 15 characters, the kernel's limit.
inline void name_this_thread(const char* name) { ::pthread_setname_np(::pthread_self(), name); }

}  // namespace fetchq::util
