// Settler: makes finished downloads durable and puts them in place, on a thread of its own.
//
// For a batch of completed downloads, in this order: sync the data (one syncfs per filesystem
// when many files share it, else one fsync per file, in parallel on a SyncPool) and check the
// sha256; commit each size ("seal") in one transaction; rename each .part to its final name (or
// link a file that was never named, PartFile::unnamed, to it); fsync each folder once. A crash
// at any point leaves a .part to resume, a whole file whose size and identity were committed
// first (the scheduler recovers those), or, for a file never named, nothing: it is downloaded
// again. Outcomes go into the items,
// which go back to the loop through `done`. The settle thread holds no lock while it works.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <vector>

#include "queue/messages.h"
#include "queue/sync_pool.h"
#include "queue/worker.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/env.h"

namespace fetchq::queue {

class Settler {
 public:
  using Done = std::function<void(std::vector<Settling>&)>;
  // syncfs_from: see QueueOptions::syncfs_from. done runs on the settle thread.
  // env: every file-system call of the settle step; it outlives the settler.
  Settler(store::Store* store, util::Env& env, int syncfs_from, Done done);
  ~Settler();  // stop()
  Settler(const Settler&) = delete;
  Settler& operator=(const Settler&) = delete;

  // Any thread: queues items for the settle thread.
  void hand(std::vector<Settling> items);
  // Settles what was handed, then joins the thread. Idempotent.
  void stop();

  // The work of one batch, on the calling thread (the settle thread, or a test).
  void settle(std::vector<Settling>& items);

 private:
  // What one syncfs did for an item: nothing (its own fsync writes it out), wrote it out (its
  // fdatasync only checks for its errors), or wrote it out and would have reported its errors.
  enum class Synced { kNo, kWrittenOut, kChecked };
  std::vector<Synced> sync_filesystems(const std::vector<Settling>& items);

  store::Store* store_;
  util::Env& env_;
  const int syncfs_from_;
  Done done_;
  SyncPool sync_pool_{3};  // with the settle thread: four fsyncs at a time
  std::map<dev_t, util::SteadyClock::time_point> syncfs_paused_until_;  // settle thread only

  Worker<Settling> worker_;  // last: its thread starts once the members above are ready
};

// rename(2) of the .part to its final name, both relative to the folder the transfer opened
// (never through a link swapped in since), without replacing an existing file unless the job
// asked to overwrite; a file that was never named (PartFile::unnamed) is linked to the final
// name instead, also never replacing one. Returns 0 or an errno value.
int rename_into_place(util::Env& env, const transfer::PartFile& file, IfExists policy);

}  // namespace fetchq::queue
