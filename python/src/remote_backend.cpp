// The fetchqd backend: the typed control client on one connection for the calls, and a thread
// following the event log on a second one (with a third for looking jobs up as events come).
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "backend.h"
#include "control/client.h"

namespace fetchq::python {
namespace {

using control::Client;

// The callback kind of a download event of the log; nullptr for the others.
const char* kind_of(const std::string& type) {
  if (type == "download_started") return "started";
  if (type == "download_progress") return "progress";
  if (type == "download_complete") return "complete";
  if (type == "download_error") return "error";
  if (type == "download_cancelled") return "cancelled";
  if (type == "download_paused") return "paused";
  return nullptr;
}

class RemoteBackend final : public Backend {
 public:
  RemoteBackend(Client calls, Client events, Client lookups, std::shared_ptr<EventChannel> channel)
      : calls_(std::move(calls)), channel_(std::move(channel)) {
    thread_ = std::thread(
        [this, ev = std::move(events), lk = std::move(lookups)]() mutable { follow(ev, lk); });
  }
  ~RemoteBackend() override { shutdown(); }

  Result<Job> download(const DownloadRequest& r) override {
    return locked([&] { return calls_.download(r); });
  }
  Result<std::vector<Job>> list_jobs() override {
    return locked([&] { return calls_.list_jobs(ListFilter{}); });
  }
  Result<std::optional<Job>> id_to_job(int64_t id) override {
    auto r = locked([&] { return calls_.id_to_job(id); });
    if (r) return std::optional<Job>(std::move(r.value()));
    if (r.error().code == ErrorCode::kNotFound) return std::optional<Job>();
    return r.error();
  }
  Result<Job> cancel_job(int64_t id) override {
    return locked([&] { return calls_.cancel_job(id); });
  }
  Result<Job> pause_job(int64_t id) override {
    return locked([&] { return calls_.pause_job(id); });
  }
  Result<Job> resume_job(int64_t id) override {
    return locked([&] { return calls_.resume_job(id); });
  }
  Result<Job> retry_job(int64_t id) override {
    return locked([&] { return calls_.retry_job(id); });
  }
  Result<int64_t> cancel_all_jobs() override {
    return locked([&] { return calls_.cancel_all_jobs(); });
  }
  Result<int64_t> prune_jobs() override {
    return locked([&] { return calls_.prune_jobs(); });
  }
  Result<bool> join(std::optional<std::chrono::milliseconds> timeout,
                    const std::vector<int64_t>& ids) override {
    std::optional<double> seconds;
    if (timeout) seconds = static_cast<double>(timeout->count()) / 1000.0;
    return locked([&] { return calls_.join(ids, seconds); });
  }
  void shutdown() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  // One request at a time on the calls connection (Client is not thread-safe).
  template <typename Fn>
  auto locked(Fn&& fn) -> decltype(fn()) {
    std::lock_guard lk(mu_);
    return fn();
  }

  // Reads the subscription until shutdown() or until fetchqd goes away, pushing each download
  // event with the job as fetchqd has it (its bytes as the event counted them).
  void follow(Client& events, Client& lookups) {
    while (!stop_) {
      auto message = events.read_message(200);
      if (!message) {
        spdlog::error("fetchqd's event stream ended: {}", message.error().message);
        break;
      }
      if (!message.value()) continue;  // nothing within 200 ms: look at stop_ again
      const nlohmann::json& m = *message.value();
      if (m.value("method", std::string()) != "event" || !m.contains("params")) continue;
      Event event;
      try {
        event = m["params"].get<Event>();
      } catch (const nlohmann::json::exception& e) {
        spdlog::error("fetchqd sent an event that is not understood: {}", e.what());
        continue;
      }
      const char* kind = kind_of(event.type);
      if (!kind) continue;
      auto job = lookups.id_to_job(event.job_id);
      if (!job) continue;  // pruned meanwhile
      if (event.type == "download_progress") {
        auto payload = nlohmann::json::parse(event.payload, nullptr, false);
        if (payload.is_object()) {
          job->bytes = payload.value("current_bytes", job->bytes);
          job->total_bytes = payload.value("total_bytes", job->total_bytes);
        }
      }
      channel_->push(kind, job.value());
    }
    channel_->close();
  }

  std::mutex mu_;
  Client calls_;  // guarded by mu_
  std::shared_ptr<EventChannel> channel_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<Backend>> connect_remote(const std::string& socket_path,
                                                std::shared_ptr<EventChannel> events) {
  auto calls = Client::connect(socket_path);
  if (!calls) return calls.error();
  auto follower = Client::connect(socket_path);
  if (!follower) return follower.error();
  auto lookups = Client::connect(socket_path);
  if (!lookups) return lookups.error();
  if (auto sent = follower->subscribe(-1); !sent) return sent.error();
  // The subscription's answer: from here on no event is missed.
  auto answer = follower->next_event();
  if (!answer) return answer.error();
  if (!answer->subscribed) return make_error(ErrorCode::kIo, "fetchqd did not answer subscribe");
  return std::unique_ptr<Backend>(
      std::make_unique<RemoteBackend>(std::move(calls.value()), std::move(follower.value()),
                                      std::move(lookups.value()), std::move(events)));
}

}  // namespace fetchq::python
