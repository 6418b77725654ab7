// DownloadQueue::open with the file system given: tests pass an Env that fails chosen calls.
#pragma once

#include <memory>

#include "fetchq/queue.h"
#include "util/env.h"

namespace fetchq::queue {

// As DownloadQueue::open, with every file-system call of the transfer engine, checkpoints and
// the settle step made through `env`, which must outlive the queue.
Result<std::unique_ptr<DownloadQueue>> open_with_env(QueueOptions options, util::Env& env);

}  // namespace fetchq::queue
