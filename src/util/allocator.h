// Allocator settings for `fetchq` (the command line), which runs `get`. A library leaves the
// process's allocator alone, and so does fetchqd: a long-lived daemon keeps glibc's adaptive
// defaults, which give memory back after a burst (big answers on the control socket are mapped
// and unmapped whole).
#pragma once

#include <malloc.h>

namespace fetchq::util {

// libcurl allocates each transfer's receive buffer (CURLOPT_BUFFERSIZE, 256 KiB) when it
// begins and frees it when it ends. glibc raises its thresholds only as big chunks come and
// go: until then a freed top of a thread's heap went back to the kernel at once, so a `get` of
// many small files paid for an madvise with its TLB flush each and for fresh pages (a page
// fault for each page the socket's bytes were copied into), on the transfer thread. Chunks up
// to 32 MiB (glibc's own ceiling on 64-bit) come from the heaps, so a big file's write buffers
// of several MiB are not mapped anew as they grow, and up to 8 MiB free at a heap's top stays.
inline void tune_allocator() {
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 8 << 20);
}

}  // namespace fetchq::util
