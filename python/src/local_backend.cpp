// The in-process backend: fetchq::DownloadQueue, its callbacks feeding the EventChannel.
#include <utility>

#include "backend.h"

namespace fetchq::python {
namespace {

class LocalBackend final : public Backend {
 public:
  explicit LocalBackend(std::unique_ptr<DownloadQueue> q) : q_(std::move(q)) {}
  ~LocalBackend() override { q_->shutdown(); }

  Result<Job> download(const DownloadRequest& r) override { return q_->download(r); }
  Result<std::vector<Job>> list_jobs() override {
    return guarded([&] { return q_->list_jobs(); });
  }
  Result<std::optional<Job>> id_to_job(int64_t id) override {
    return guarded([&] { return q_->id_to_job(id); });
  }
  Result<Job> cancel_job(int64_t id) override { return q_->cancel_job(id); }
  Result<Job> pause_job(int64_t id) override { return q_->pause_job(id); }
  Result<Job> resume_job(int64_t id) override { return q_->resume_job(id); }
  Result<Job> retry_job(int64_t id) override { return q_->retry_job(id); }
  Result<int64_t> cancel_all_jobs() override {
    return guarded([&] { return q_->cancel_all_jobs(); });
  }
  Result<int64_t> prune_jobs() override {
    return guarded([&] { return q_->prune_jobs(); });
  }
  Result<bool> join(std::optional<std::chrono::milliseconds> timeout,
                    const std::vector<int64_t>& ids) override {
    return guarded([&] { return q_->join(timeout, ids); });
  }
  void shutdown() override { q_->shutdown(); }

 private:
  // The queue's plain-value calls throw StorageError when the database fails (queue.h).
  template <typename Fn>
  static auto guarded(Fn&& fn) -> Result<decltype(fn())> {
    try {
      return fn();
    } catch (const StorageError& e) {
      return e.error();
    }
  }

  std::unique_ptr<DownloadQueue> q_;
};

}  // namespace

Result<std::unique_ptr<Backend>> open_local(QueueOptions options,
                                            std::shared_ptr<EventChannel> events) {
  // Runs on the queue's callback thread: a mutex and a notify, never the GIL.
  auto to = [&events](const char* kind) {
    return [ch = events, kind](const Job& job) { ch->push(kind, job); };
  };
  options.callbacks.on_start = to("started");
  options.callbacks.on_progress = to("progress");
  options.callbacks.on_complete = to("complete");
  options.callbacks.on_error = to("error");
  options.callbacks.on_cancelled = to("cancelled");
  options.callbacks.on_paused = to("paused");
  auto opened = DownloadQueue::open(std::move(options));
  if (!opened) return opened.error();
  return std::unique_ptr<Backend>(std::make_unique<LocalBackend>(std::move(opened.value())));
}

}  // namespace fetchq::python
