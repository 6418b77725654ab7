// join over many ids, asked again after every change of the queue: the ids are walked in order
// from the first one not yet seen ended, instead of asking about all of them each time. Used by
// the queue's own join and by the control server's waiters, which keep their place between
// changes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fetchq/job.h"

namespace fetchq::queue {

inline std::vector<int64_t> sorted_unique(std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// A key for a sorted id list (FNV-1a over the ids): equal lists give equal keys. Two lists may
// share a key, so it may only choose a starting point, never decide an answer.
inline uint64_t ids_key(const std::vector<int64_t>& ids) {
  uint64_t h = 14695981039346656037ull ^ ids.size();
  for (int64_t id : ids) {
    h ^= static_cast<uint64_t>(id);
    h *= 1099511628211ull;
  }
  return h;
}

// Moves *ended past the ids (sorted) whose jobs have ended or are gone (pruned); true when it
// reached the end, false at the first job still waiting or running. job_of(id) returns an
// std::optional<Job>. Reaching the end is not yet an answer: a job passed earlier may have been
// put back to waiting (retry, resume) since, so callers confirm with one query over all ids.
template <class JobOf>
bool walk_past_ended(const std::vector<int64_t>& ids, size_t* ended, JobOf job_of) {
  for (; *ended < ids.size(); ++*ended) {
    auto job = job_of(ids[*ended]);
    if (job && (job->status == JobStatus::kWaiting || job->status == JobStatus::kRunning)) return false;
  }
  return true;
}

}  // namespace fetchq::queue
