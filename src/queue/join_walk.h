// join over many ids, asked again after every change of the queue: the ids are walked in order
// from the first one not yet seen ended, instead of asking about all of them each time. Used by
// the queue's own join and by the control server's waiters, which keep their place between
// changes.
#pragma once

#include <algorithm>
#include <cstddef>
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

// How many ids the queue's join asks about in one read: the jobs of a long list end roughly in
// order, so one read usually passes a whole chunk or stops at the first one still running.
inline constexpr size_t kJoinChunk = 64;

// Moves *ended past the ids (sorted) whose jobs have ended or are gone (pruned), `chunk` ids at
// a time; true when it reached the end, false at the first chunk with a job still waiting or
// running. unfinished(first, last) says whether any of the ids in [first, last) is waiting or
// running. Reaching the end is not yet an answer: a job passed earlier may have been put back
// to waiting (retry, resume) since, so callers confirm with one query over all ids.
template <class Unfinished>
bool walk_past_ended(const std::vector<int64_t>& ids, size_t* ended, size_t chunk,
                     Unfinished unfinished) {
  chunk = std::max<size_t>(chunk, 1);
  while (*ended < ids.size()) {
    const size_t last = std::min(ids.size(), *ended + chunk);
    if (unfinished(ids.begin() + static_cast<std::ptrdiff_t>(*ended),
                   ids.begin() + static_cast<std::ptrdiff_t>(last))) {
      return false;
    }
    *ended = last;
  }
  return true;
}

}  // namespace fetchq::queue
