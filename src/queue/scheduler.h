// Scheduler: claims waiting jobs for free transfer slots and turns each into a launch: a
// transfer request for the engine, or a file found already whole on disk.
//
// Loop thread only; no lock of the queue is held while it reads or writes the store.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "queue/messages.h"
#include "store/store.h"
#include "transfer/transfer.h"

namespace fetchq::queue {

// What to do with one claimed job: register `active`, then either submit `request` to the
// engine or post `recovered` to the loop.
struct Launch {
  int64_t job_id = 0;
  Active active;
  std::optional<transfer::Request> request;
  std::optional<FinishedMsg> recovered;  // the last run renamed it into place, then died
};

// Pure: the launch of one claimed job. download_roots: QueueOptions::download_roots.
Launch prepare_launch(const store::ClaimedJob& c, const std::vector<std::string>& download_roots);

// Claims up to `free_slots` due jobs (with `only`, among those ids) and prepares their launches.
// Store errors propagate (nothing was claimed then): the caller logs them and tries later.
std::vector<Launch> claim_launches(store::Store& store, int free_slots,
                                   const std::optional<std::vector<int64_t>>& only,
                                   const std::vector<std::string>& download_roots);

}  // namespace fetchq::queue
