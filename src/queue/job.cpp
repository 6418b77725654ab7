// Job and event: names of states and policies, and their JSON shapes.
#include "fetchq/job.h"

#include <nlohmann/json.hpp>

namespace fetchq {

std::string_view to_string(JobStatus status) {
  switch (status) {
    case JobStatus::kWaiting: return "waiting";
    case JobStatus::kRunning: return "running";
    case JobStatus::kPaused: return "paused";
    case JobStatus::kCompleted: return "completed";
    case JobStatus::kCancelled: return "cancelled";
    case JobStatus::kError: return "error";
  }
  return "error";
}

std::optional<JobStatus> parse_job_status(std::string_view text) {
  for (auto s : {JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused, JobStatus::kCompleted,
                 JobStatus::kCancelled, JobStatus::kError}) {
    if (to_string(s) == text) return s;
  }
  return std::nullopt;
}

bool is_terminal(JobStatus status) {
  return status == JobStatus::kCompleted || status == JobStatus::kCancelled ||
         status == JobStatus::kError;
}

std::string_view to_string(IfExists policy) {
  switch (policy) {
    case IfExists::kError: return "error";
    case IfExists::kSkip: return "skip";
    case IfExists::kOverwrite: return "overwrite";
    case IfExists::kRename: return "rename";
  }
  return "error";
}

std::optional<IfExists> parse_if_exists(std::string_view text) {
  for (auto p : {IfExists::kError, IfExists::kSkip, IfExists::kOverwrite, IfExists::kRename}) {
    if (to_string(p) == text) return p;
  }
  return std::nullopt;
}

static nlohmann::json opt(const std::optional<std::string>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

void to_json(nlohmann::json& out, const Job& j) {
  out = nlohmann::json{
      {"id", j.id},
      {"source", j.source},
      {"dest", j.dest},
      {"priority", j.priority},
      {"status", std::string(to_string(j.status))},
      {"download_path", opt(j.download_path)},
      {"job_started", opt(j.job_started)},
      {"job_ended", opt(j.job_ended)},
      {"bytes", j.bytes},
      {"total_bytes", j.total_bytes},
      {"error_type", opt(j.error_type)},
      {"error", opt(j.error)},
      {"cancelled", j.cancelled},
      {"attempts", j.attempts},
      {"has_access_token", j.has_access_token},
      {"created_at", j.created_at},
  };
}

void to_json(nlohmann::json& out, const Event& e) {
  out = nlohmann::json::object();
  auto payload = nlohmann::json::parse(e.payload, nullptr, false);
  if (payload.is_object()) out = payload;
  out["seq"] = e.seq;
  out["ts"] = e.ts;
  out["job_id"] = e.job_id;
  out["type"] = e.type;
}

}  // namespace fetchq
