// DownloadQueue on a store the caller opened: the seam through which tests run a real queue on
// a store that fails on demand. Internal; programs use DownloadQueue::open.
#pragma once

#include <memory>

#include "fetchq/queue.h"
#include "fetchq/result.h"
#include "store/store.h"
#include "util/env.h"

namespace fetchq::queue {

// As DownloadQueue::open, with `store` in place of the one options.db_path names, and the
// file system `env` (which must outlive the queue) in place of the real one.
Result<std::unique_ptr<DownloadQueue>> open_with_store(QueueOptions options,
                                                       std::unique_ptr<store::Store> store,
                                                       util::Env& env = util::Env::posix());

}  // namespace fetchq::queue
