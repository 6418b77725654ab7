// Placement: where one attempt of a job writes, decided before its body arrives. File names
// and if-exists, the claim in the PathRegistry, the .part created fresh (made without a name,
// its identity sent to be recorded through the Observer, named once the record is answered;
// O_EXCL where that cannot be done)
// or the job's own .part reopened (identity checked), its advisory lock, and folders opened
// without following links. Nothing of HTTP.
//
// Called on the fetcher's thread by the Engine; the PathRegistry is shared with other threads.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "transfer/engine.h"
#include "transfer/path_registry.h"
#include "transfer/transfer.h"
#include "util/env.h"

namespace fetchq::transfer {

// What placement decides for one attempt; the Engine's transfer state starts with it.
struct Placement {
  Request req;
  std::optional<Failure> failure;  // the first failure wins (see fail)
  bool path_held = false;          // download_path is claimed in the PathRegistry
  std::string part_replaced;       // why the recorded .part was not used (reported as a restart)
  std::string download_path;
  std::shared_ptr<Folder> folder;  // of download_path, opened safely (see Placer::open_folder)
  std::shared_ptr<PartFile> file;
  int64_t offset = 0;   // bytes kept from before this attempt
  int64_t on_disk = 0;  // bytes written to the file
  // A fresh .part whose identity is on its way to the record (Observer::on_part_created); it
  // has no name yet when `unnamed`, else the one it was made with. See Placer::recorded.
  bool record_pending = false;
  bool unnamed = false;
};

// Records a failure unless one is recorded already.
inline void fail(Placement& t, std::string type, std::string message, bool retryable = false) {
  if (!t.failure) {
    t.failure =
        Failure{.type = std::move(type), .message = std::move(message), .retryable = retryable};
  }
}
inline void fail_disk(Placement& t, const std::string& step, const std::string& path, int err) {
  if (!t.failure) t.failure = disk_failure(step, path, err);
}

inline std::string base_name(const std::string& path) {
  return path.substr(path.find_last_of('/') + 1);
}

class Placer {
 public:
  Placer(util::Env& env, PathRegistry* paths, Observer* observer)
      : env_(env), paths_(paths), observer_(observer) {}

  // For a request whose path is known (a file destination, or an earlier attempt's choice):
  // reopens the job's own .part or makes a fresh one, as if_exists allows. Does nothing when
  // the path comes from the response (a folder destination): settle_path runs then.
  void place(Placement& t);
  // Applies if_exists to a path whose .part is not ours yet; may switch to a numbered name.
  // Claims the chosen path in the registry and creates its .part. False: t.failure says why.
  bool settle_path(Placement& t, std::string path);
  // The answer to a fresh .part's record. Recorded: an unnamed file gets its name (a name taken
  // meanwhile is left alone, and the attempt fails, retryable). Not recorded: the file is let go,
  // its name removed if it had one, and the attempt fails. Either way the bytes written into a
  // file that is let go are no longer the attempt's (offset and on_disk 0, no file).
  void recorded(Placement& t, bool ok);

 private:
  enum class Create { kCreated, kTaken, kFailed };
  enum class Reuse { kOpened, kAbsent, kReplaced, kForeign, kFailed };

  bool lock_part(Placement& t, int fd, const std::string& part);
  bool open_folder(Placement& t, const std::string& path);
  bool exists_at(Placement& t, const std::string& name);
  std::string what_is(int dir_fd, const std::string& name);
  Create create_part(Placement& t, const std::string& path);
  Reuse open_own_part(Placement& t, const std::string& path, int64_t keep, std::string* why);
  void remove_own_part(Placement& t, const std::string& path);

  util::Env& env_;
  PathRegistry* paths_;
  Observer* observer_;
  // The folders of unconfined jobs that a transfer or a .part still holds open, by path
  // (fetcher thread only): the next file for one of them shares the open folder.
  struct OpenFolder {
    std::weak_ptr<Folder> folder;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  std::map<std::string, OpenFolder> open_folders_;
};

}  // namespace fetchq::transfer
