// Allocator settings for fetchq's programs (fetchq, fetchqd). A library leaves the process's
// allocator alone; the programs call this first thing in main.
#pragma once

#include <malloc.h>

namespace fetchq::util {

// libcurl allocates each transfer's receive buffer (CURLOPT_BUFFERSIZE, 256 KiB) when it
// begins and frees it when it ends. With glibc's defaults such a chunk is mapped anew, or
// taken from a thread's heap whose top is handed back to the kernel as soon as it is freed:
// every small file then paid for fresh pages (a page fault for each page the socket's bytes
// were copied into) and an madvise with its TLB flush, on the transfer thread. Chunks up to
// 1 MiB come from the heaps, and up to 4 MiB free at the top of a heap stay there.
inline void tune_allocator() {
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 4 << 20);
}

}  // namespace fetchq::util
