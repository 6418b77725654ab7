// Allocator settings for fetchq's programs (fetchq, fetchqd). A library leaves the process's
// allocator alone; the programs call this first thing in main.
#pragma once

#include <malloc.h>

namespace fetchq::util {

// libcurl allocates each transfer's receive buffer (CURLOPT_BUFFERSIZE, 256 KiB) when it
// begins and frees it when it ends. With glibc's adaptive defaults a freed top of the transfer
// thread's heap went back to the kernel at once, so many small files paid for an madvise with
// its TLB flush each and for fresh pages (a page fault for each page the socket's bytes were
// copied into): 122-178 madvise calls and up to 6,500 faults in a run of 2,000 files, 8 and
// about 3,400 with these settings. Chunks up to 4 MiB come from the heaps (a transfer's write
// buffer is at most 1 MiB: mapped anew as it grew, a big file cost a quarter more CPU), bigger
// ones are mapped and unmapped whole (fetchqd builds big answers on its control socket, and its
// memory must come back once they are sent), and at most 8 MiB free at a heap's top is kept.
inline void tune_allocator() {
  ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 8 << 20);
}

}  // namespace fetchq::util
