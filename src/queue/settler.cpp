// Settler: see settler.h.
#include "queue/settler.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "transfer/prefix_hash.h"
#include "util/clock.h"
#include "util/fs.h"

namespace fetchq::queue {

using Clock = util::SteadyClock;

Settler::Settler(store::Store* store, util::Env& env, int syncfs_from, Done done)
    : store_(store),
      env_(env),
      syncfs_from_(syncfs_from),
      done_(std::move(done)),
      worker_("fetchq-settle", [this](std::vector<Settling>& items) {
        settle(items);
        done_(items);
      }) {}

Settler::~Settler() { stop(); }

void Settler::hand(std::vector<Settling> items) { worker_.post_all(std::move(items)); }

void Settler::stop() { worker_.stop(); }

// For each filesystem holding at least syncfs_from_ of the items, one syncfs(). Which items it
// wrote out is returned; their own sync is then only a check, or none at all where syncfs()
// reports every file's writeback errors: it is called on the file opened first, so an error
// of any of them came after that file's open and is reported (bytes of a file this attempt
// did not make empty were written before, so it keeps its check). syncfs() also waits for other
// programs' unwritten data on that filesystem: when it took over kSlowSyncfs, the filesystem
// is left to per-file fsync for kSyncfsPause.
std::vector<Settler::Synced> Settler::sync_filesystems(const std::vector<Settling>& items) {
  static constexpr auto kSlowSyncfs = std::chrono::seconds(1);
  static constexpr auto kSyncfsPause = std::chrono::seconds(60);
  std::vector<Synced> out(items.size(), Synced::kNo);
  if (syncfs_from_ <= 0 || static_cast<int>(items.size()) < syncfs_from_) return out;
  std::map<dev_t, std::vector<size_t>> by_fs;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& file = *items[i].f.r.file;
    struct stat st {};
    if (file.dev()) {
      by_fs[*file.dev()].push_back(i);
    } else if (env_.fstat(file.fd(), &st) == 0) {
      by_fs[st.st_dev].push_back(i);
    }
  }
  auto now = Clock::now();
  for (auto& [dev, idx] : by_fs) {
    if (static_cast<int>(idx.size()) < syncfs_from_) continue;
    auto paused = syncfs_paused_until_.find(dev);
    if (paused != syncfs_paused_until_.end() && now < paused->second) continue;
    const size_t first = *std::min_element(idx.begin(), idx.end(), [&](size_t a, size_t b) {
      return items[a].f.r.file->opened_order() < items[b].f.r.file->opened_order();
    });
    auto t0 = Clock::now();
    if (env_.syncfs(items[first].f.r.file->fd()) != 0) continue;  // each file's fsync will tell
    auto took = Clock::now() - t0;
    if (took > kSlowSyncfs) {
      spdlog::info("syncfs took {} ms; syncing files one by one for a while",
                   std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
      syncfs_paused_until_[dev] = Clock::now() + kSyncfsPause;
    }
    // A file this attempt did not make empty (resumed, or found whole) holds bytes written
    // before any of these files was opened: its own fdatasync checks for their errors.
    const bool reports = util::syncfs_reports_errors(items[first].f.r.file->fd());
    for (size_t i : idx) {
      out[i] = reports && items[i].f.r.file->fresh() ? Synced::kChecked : Synced::kWrittenOut;
    }
  }
  return out;
}

void Settler::settle(std::vector<Settling>& items) {
  using Item = Settling;
  const std::vector<Synced> synced = sync_filesystems(items);
  std::vector<std::function<void()>> tasks;
  for (size_t i = 0; i < items.size(); ++i) {
    // A checkpoint's sync of the file failed: bytes may be lost however its last sync ends.
    if (const int err = items[i].f.r.file->sync_error(); err != 0) {
      items[i].failure = transfer::disk_failure("fdatasync", items[i].f.r.file->part_path(), err);
      continue;
    }
    if (synced[i] == Synced::kChecked && !items[i].a.sha256) continue;  // nothing left to do
    tasks.push_back([this, &item = items[i], how = synced[i]] {
      const auto& r = item.f.r;
      const std::string part = r.file->part_path();
      const bool after_syncfs = how == Synced::kWrittenOut;
      // One at a time with a checkpoint's sync of the file that may still run (PartFile::sync).
      if (how != Synced::kChecked) {
        if (const int err = r.file->sync(env_, /*full=*/!after_syncfs); err != 0) {
          item.failure = transfer::disk_failure(after_syncfs ? "fdatasync" : "fsync", part, err);
          return;
        }
      }
      if (!item.a.sha256) return;
      // What the download hashed as it went, and the rest read now; else the whole file.
      // Read through the descriptor: the file may have no name (see PartFile::unnamed), and
      // one swapped in at its name is not what gets moved into place.
      auto sum = r.prefix_hash ? r.prefix_hash->finish() : util::sha256_fd(r.file->fd(), part);
      if (sum && r.prefix_hash) {
        spdlog::debug("job {}: sha256 of {}: {} bytes hashed while it downloaded, the rest now", item.f.id,
                      part, r.prefix_hash->hashed());
      }
      if (!sum) {
        item.failure = transfer::Failure{"DiskError", sum.error().message, false, std::nullopt, false, true};
      } else if (*sum != *item.a.sha256) {
        // A resumed file may hide a bad splice: one more try, from zero. A fresh one is wrong.
        item.failure = transfer::Failure{"ChecksumMismatch",
                                         "sha256 of " + part + " is " + *sum + ", expected " + *item.a.sha256 +
                                             (item.a.sha256_from.empty() ? "" : " (the server's " + item.a.sha256_from + ")"),
                                         item.a.resumed, std::nullopt, item.a.resumed, false};
      }
    });
  }
  sync_pool_.run(tasks);
  try {
    store_->transaction([&] {
      for (auto& item : items) {
        if (!item.failure) {
          store_->seal(item.f.id, item.f.attempt, item.f.r.download_path, item.f.r.bytes, util::boot_id());
        }
      }
    });
  } catch (const std::exception& e) {
    for (auto& item : items) {
      if (!item.failure) {
        item.failure = transfer::Failure{"DiskError", std::string("cannot record the finished file: ") + e.what(),
                                         true, std::nullopt, false, true};
      }
    }
  }
  std::map<std::string, std::vector<Item*>> by_path;
  for (auto& item : items) {
    if (item.failure) continue;
    const std::string& path = item.f.r.download_path;
    const std::string part = path + ".part";
    auto& file = *item.f.r.file;
    const bool unnamed = file.unnamed();
    int err = rename_into_place(env_, file, item.a.if_exists);
    // A file never named that cannot take its final name keeps its bytes under its .part name,
    // as a named one does (a retry resumes from it); false when that name cannot be made either.
    auto keep_as_part = [&] { return !unnamed || transfer::name_as_part(env_, file) == 0; };
    if (err == EEXIST && item.a.if_exists == IfExists::kRename) {
      // The retry finds the name taken, removes this .part and starts under a numbered name.
      item.failure = transfer::Failure{
          .type = "DestinationExists",
          .message = path +
                     " appeared while downloading; the download starts again under a "
                     "new name (--if-exists rename)",
          .retryable = true,
          .restart_from_zero = true};
    } else if (err == EEXIST) {
      item.failure = transfer::Failure{
          "DestinationExists",
          path + " appeared while downloading; " +
              (keep_as_part() ? "the download stays in " + part
                              : "the download was not kept (" + part + " could not be made)"),
          false,
          std::nullopt,
          false,
          false};
    } else if (err != 0) {
      item.failure = transfer::disk_failure(
          unnamed ? "link the finished download to" : "rename " + part + " to", path, err);
      if (!keep_as_part()) item.failure->message += " (the download was not kept)";
    } else {
      by_path[util::parent_dir(path)].push_back(&item);
    }
  }
  // One fsync per folder the renames went through. Files of one path share its open folder, or
  // hold folders of their own that are the same one unless it was moved away and made again
  // meanwhile: then each needs its own fsync.
  std::vector<std::pair<const transfer::Folder*, std::vector<Item*>>> folders;
  for (auto& [dir, list] : by_path) {
    const transfer::Folder* first = &list.front()->f.r.file->folder();
    if (std::all_of(list.begin(), list.end(),
                    [&](Item* i) { return &i->f.r.file->folder() == first; })) {
      folders.push_back({first, list});
      continue;
    }
    std::map<std::pair<dev_t, ino_t>, size_t> index;  // a folder's identity -> its place in folders
    for (auto* item : list) {
      const transfer::Folder* f = &item->f.r.file->folder();
      struct stat st {};
      if (env_.fstat(f->fd(), &st) != 0) {
        folders.push_back({f, {item}});  // cannot tell: an fsync of its own
        continue;
      }
      auto [it, added] = index.emplace(std::make_pair(st.st_dev, st.st_ino), folders.size());
      if (added) {
        folders.push_back({f, {item}});
      } else {
        folders[it->second].second.push_back(item);
      }
    }
  }
  tasks.clear();
  for (auto& [folder, list] : folders) {
    tasks.push_back([this, folder = folder, &list = list] {
      int err = env_.fsync(folder->fd()) == 0 ? 0 : errno;
      if (err == 0) return;
      for (auto* item : list)
        item->failure = transfer::disk_failure("fsync the folder", folder->path(), err);
    });
  }
  sync_pool_.run(tasks);
  for (auto& item : items) {
    if (item.failure) {
      item.f.r.failure = *item.failure;
      item.f.r.outcome = transfer::Outcome::kFailed;
    } else {
      item.f.renamed = true;
    }
  }
}

int rename_into_place(util::Env& env, const transfer::PartFile& file, IfExists policy) {
  const int dfd = file.folder().fd();
  const std::string part = file.part_name(), name = file.final_name();
  // Never named: linked to the final name, which fails with EEXIST and replaces nothing.
  if (file.unnamed()) return env.link_unnamed(file.fd(), dfd, name.c_str()) == 0 ? 0 : errno;
  int rc = policy == IfExists::kOverwrite
               ? env.renameat(dfd, part.c_str(), dfd, name.c_str())
               : env.renameat2(dfd, part.c_str(), dfd, name.c_str(), RENAME_NOREPLACE);
  return rc == 0 ? 0 : errno;
}

}  // namespace fetchq::queue
