// Allocator settings for fetchq's programs (fetchq, fetchqd). A library leaves the process's
// allocator alone; the programs call this first thing in main.
#pragma once

#include <malloc.h>

namespace fetchq::util {

// libcurl allocates each transfer's receive buffer (CURLOPT_BUFFERSIZE, 256 KiB) when it
// begins and frees it when it ends. glibc raises its thresholds only as big chunks come and
// go: until then a freed top of a thread's heap went back to the kernel at once, so many small
// files paid for an madvise with its TLB flush each and for fresh pages (a page fault for each
// page the socket's bytes were copied into), on the transfer thread. These are the values
// glibc's own adjustment ends at on 64-bit (chunks up to 32 MiB from the heaps, up to twice
// that free at a heap's top kept), set from the start; lower ones cost big files CPU, as their
// write buffers of several MiB were then mapped anew each time.
inline void tune_allocator() {
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

}  // namespace fetchq::util
