// Scheduler: see scheduler.h.
#include "queue/scheduler.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include "queue/request_check.h"
#include "util/clock.h"
#include "util/fs.h"

namespace fetchq::queue {

namespace {

// Whether the file at path is the one the job's .part record names (a rename or link of it
// keeps its inode): same device and inode, and the same birth where one was recorded. Without
// a record (a job from before records) the size alone decides, as it did.
bool is_the_recorded_file(const std::string& path,
                          const std::optional<store::ClaimedJob::PartRecord>& part) {
  if (!part) return true;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (static_cast<uint64_t>(st.st_dev) != part->dev ||
      static_cast<uint64_t>(st.st_ino) != part->ino)
    return false;
  return part->birth_ns == 0 || util::birth_time_ns(AT_FDCWD, path.c_str()) == part->birth_ns;
}

}  // namespace

Launch prepare_launch(const store::ClaimedJob& c, const std::vector<std::string>& download_roots) {
  Launch l;
  l.job_id = c.job.id;
  if (c.job.download_path && c.sealed_bytes && !util::exists(*c.job.download_path + ".part") &&
      util::file_size(*c.job.download_path) == c.sealed_bytes &&
      is_the_recorded_file(*c.job.download_path, c.part_identity)) {
    // The last run put the finished file into place and died before recording it. A file of
    // the same size that someone else put there (the sealed file, never named, was lost with
    // the crash) is not taken for it: the job downloads again and meets it as any other.
    Active a;
    a.attempt = c.attempt;
    a.source = c.job.source;
    a.download_path = *c.job.download_path;
    a.sha256 = c.sha256;
  a.sha256_from = c.job.sha256_from.value_or("");
    a.if_exists = c.if_exists;
    l.active = std::move(a);
    FinishedMsg f{c.job.id, c.attempt, {}};
    f.r.outcome = transfer::Outcome::kAlreadyThere;
    f.r.download_path = *c.job.download_path;
    f.r.bytes = *c.sealed_bytes;
    f.r.total_bytes = *c.sealed_bytes;
    f.recovered = true;
    l.recovered = std::move(f);
    return l;
  }
  transfer::Request req;
  req.job_id = c.job.id;
  req.attempt = c.attempt;
  auto url = transfer_url(c.job.source, c.url_password);
  req.url = std::move(url.url);
  req.username = std::move(url.user);
  req.password = std::move(url.password);
  req.mirrors = c.job.mirrors;
  req.dest = c.job.dest;
  req.dest_is_dir = c.dest_is_dir;
  req.if_exists = c.if_exists;
  req.download_path = c.job.download_path;
  req.etag = c.etag;
  req.last_modified = c.last_modified;
  req.validator_url = c.validator_url;
  req.access_token = c.access_token;
  req.headers = c.headers;
  req.user_agent = c.job.user_agent;
  req.expected_total = c.job.total_bytes;
  req.connections = c.connections;
  req.rate_limit = c.job.limit_rate;
  req.verify_sha256 = c.sha256.has_value();
  if (!download_roots.empty()) {
    req.confined = true;
    // A folder destination may be a root itself: its files are beneath it.
    const std::string probe = c.job.download_path ? *c.job.download_path : c.job.dest + "/x";
    req.root = util::root_of(probe, download_roots).value_or("");
  }
  if (c.job.download_path) {
    // How much of the job's .part may be kept; the engine checks that it is still the file
    // the job created and keeps no more than it holds. After a reboot only the synced
    // checkpoint is real. In the same boot the page cache survived, so the bytes the job
    // recorded as written (progress, about once a second) are too, but nothing beyond them:
    // bytes appended while fetchq was down are not the server's.
    const bool same_boot = c.checkpoint_boot_id == util::boot_id();
    req.offset = same_boot ? std::max(c.checkpoint_bytes, c.job.bytes) : c.checkpoint_bytes;
    // A segmented attempt's progress counts bytes all over the file, not a prefix: only the
    // checkpoint (the synced contiguous prefix) may be kept.
    if (!c.segments.empty()) req.offset = c.checkpoint_bytes;
    if (!c.segments.empty() && c.part_identity && c.job.total_bytes > 0 &&
        c.segments.back().end == c.job.total_bytes) {
      // Each segment resumes from its own bytes: the preallocated .part is kept whole. In the
      // same boot those it wrote by the last progress report, else the durable ones.
      req.offset = c.job.total_bytes;
      for (const auto& s : c.segments) {
        req.segments.push_back(transfer::SegmentSpan{
            s.start, s.end, same_boot ? std::max(s.durable, s.written) : s.durable});
      }
    }
    if (c.part_identity) {
      req.part_identity = transfer::PartIdentity{c.part_identity->dev, c.part_identity->ino,
                                                 c.part_identity->birth_ns};
    } else {
      // A job from before identities were recorded: only a checkpoint made a promise.
      req.legacy_part = c.checkpoint_bytes > 0;
      req.offset = c.checkpoint_bytes;
    }
  }
  Active a;
  a.attempt = c.attempt;
  a.source = c.job.source;
  a.download_path = c.job.download_path.value_or("");
  a.failures = c.failures;
  a.failing_since_ms = c.failing_since_ms;
  a.best_bytes = c.best_bytes;
  a.sha256 = c.sha256;
  a.sha256_from = c.job.sha256_from.value_or("");
  a.if_exists = c.if_exists;
  l.active = std::move(a);
  l.request = std::move(req);
  return l;
}

std::vector<Launch> claim_launches(store::Store& store, int free_slots,
                                   const std::optional<std::vector<int64_t>>& only,
                                   const std::vector<std::string>& download_roots) {
  std::vector<Launch> out;
  if (free_slots <= 0) return out;
  for (auto& c : store.claim(free_slots, util::now_unix_ms(), only, util::now_iso8601())) {
    out.push_back(prepare_launch(c, download_roots));
  }
  return out;
}

}  // namespace fetchq::queue
