// Job and event: names of states and policies, and their JSON shapes.
#include "fetchq/job.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

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

bool is_secret_header(std::string_view name) {
  auto same = [name](std::string_view other) {
    return name.size() == other.size() &&
           std::equal(name.begin(), name.end(), other.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
           });
  };
  return same("authorization") || same("proxy-authorization") || same("cookie");
}

std::string shown_header(const RequestHeader& h) {
  return h.name + ": " + (is_secret_header(h.name) ? std::string("<secret>") : h.value);
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
  if (j.duplicate_of) out["duplicate_of"] = *j.duplicate_of;
  if (j.limit_rate > 0) out["limit_rate"] = j.limit_rate;
  if (!j.segments.empty()) {
    auto& a = out["segments"] = nlohmann::json::array();
    for (const auto& s : j.segments) a.push_back({{"start", s.start}, {"end", s.end}, {"bytes", s.bytes}});
  }
  out["headers"] = j.headers;
  out["user_agent"] = opt(j.user_agent);
  out["mirrors"] = j.mirrors;
  out["sha256"] = opt(j.sha256);
  out["sha256_from"] = opt(j.sha256_from);
}

namespace {

// A JSON string literal. Printable ASCII without quote or backslash, the usual case for URLs,
// paths and times, is copied as is; anything else goes through nlohmann's own escaping.
void append_string(std::string& out, std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (plain) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

void append_optional(std::string& out, const std::optional<std::string>& s) {
  if (s) {
    append_string(out, *s);
  } else {
    out += "null";
  }
}

}  // namespace

void append_json(std::string& out, const Job& j) {
  // nlohmann's objects keep their keys sorted; so does this.
  out += "{\"attempts\":";
  out += std::to_string(j.attempts);
  out += ",\"bytes\":";
  out += std::to_string(j.bytes);
  out += ",\"cancelled\":";
  out += j.cancelled ? "true" : "false";
  out += ",\"created_at\":";
  append_string(out, j.created_at);
  out += ",\"dest\":";
  append_string(out, j.dest);
  out += ",\"download_path\":";
  append_optional(out, j.download_path);
  if (j.duplicate_of) {
    out += ",\"duplicate_of\":";
    out += std::to_string(*j.duplicate_of);
  }
  out += ",\"error\":";
  append_optional(out, j.error);
  out += ",\"error_type\":";
  append_optional(out, j.error_type);
  out += ",\"has_access_token\":";
  out += j.has_access_token ? "true" : "false";
  out += ",\"headers\":[";
  for (size_t i = 0; i < j.headers.size(); ++i) {
    if (i > 0) out += ',';
    append_string(out, j.headers[i]);
  }
  out += ']';
  out += ",\"id\":";
  out += std::to_string(j.id);
  out += ",\"job_ended\":";
  append_optional(out, j.job_ended);
  out += ",\"job_started\":";
  append_optional(out, j.job_started);
  if (j.limit_rate > 0) {
    out += ",\"limit_rate\":";
    out += std::to_string(j.limit_rate);
  }
  out += ",\"mirrors\":[";
  for (size_t i = 0; i < j.mirrors.size(); ++i) {
    if (i > 0) out += ',';
    append_string(out, j.mirrors[i]);
  }
  out += ']';
  out += ",\"priority\":";
  out += std::to_string(j.priority);
  if (!j.segments.empty()) {
    out += ",\"segments\":[";
    for (size_t i = 0; i < j.segments.size(); ++i) {
      const auto& s = j.segments[i];
      if (i > 0) out += ',';
      out += "{\"bytes\":" + std::to_string(s.bytes) + ",\"end\":" + std::to_string(s.end) +
             ",\"start\":" + std::to_string(s.start) + "}";
    }
    out += ']';
  }
  out += ",\"sha256\":";
  append_optional(out, j.sha256);
  out += ",\"sha256_from\":";
  append_optional(out, j.sha256_from);
  out += ",\"source\":";
  append_string(out, j.source);
  out += ",\"status\":";
  append_string(out, to_string(j.status));
  out += ",\"total_bytes\":";
  out += std::to_string(j.total_bytes);
  out += ",\"user_agent\":";
  append_optional(out, j.user_agent);
  out += '}';
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

namespace {

template <class T>
void read(const nlohmann::json& in, const char* key, T& field) {
  auto it = in.find(key);
  if (it != in.end() && !it->is_null()) it->get_to(field);
}

void read_optional(const nlohmann::json& in, const char* key, std::optional<std::string>& field) {
  auto it = in.find(key);
  if (it == in.end() || it->is_null()) {
    field.reset();
  } else {
    field = it->get<std::string>();
  }
}

}  // namespace

void from_json(const nlohmann::json& in, Job& j) {
  read(in, "id", j.id);
  read(in, "source", j.source);
  read(in, "dest", j.dest);
  read(in, "priority", j.priority);
  if (auto it = in.find("status"); it != in.end() && !it->is_null()) {
    auto status = parse_job_status(it->get<std::string>());
    if (!status) {
      throw nlohmann::json::other_error::create(501, "unknown job status '" + it->get<std::string>() + "'", &in);
    }
    j.status = *status;
  }
  read_optional(in, "download_path", j.download_path);
  read_optional(in, "job_started", j.job_started);
  read_optional(in, "job_ended", j.job_ended);
  read(in, "bytes", j.bytes);
  read(in, "total_bytes", j.total_bytes);
  read_optional(in, "error_type", j.error_type);
  read_optional(in, "error", j.error);
  read(in, "cancelled", j.cancelled);
  read(in, "attempts", j.attempts);
  read(in, "has_access_token", j.has_access_token);
  read(in, "created_at", j.created_at);
  read(in, "limit_rate", j.limit_rate);
  if (auto it = in.find("duplicate_of"); it != in.end() && !it->is_null()) j.duplicate_of = it->get<int64_t>();
  j.segments.clear();
  if (auto it = in.find("segments"); it != in.end() && it->is_array()) {
    for (const auto& s : *it) {
      JobSegment seg;
      read(s, "start", seg.start);
      read(s, "end", seg.end);
      read(s, "bytes", seg.bytes);
      j.segments.push_back(seg);
    }
  }
  j.headers.clear();
  if (auto it = in.find("headers"); it != in.end() && it->is_array()) {
    for (const auto& h : *it) j.headers.push_back(h.get<std::string>());
  }
  read_optional(in, "user_agent", j.user_agent);
  j.mirrors.clear();
  if (auto it = in.find("mirrors"); it != in.end() && it->is_array()) {
    for (const auto& m : *it) j.mirrors.push_back(m.get<std::string>());
  }
  read_optional(in, "sha256", j.sha256);
  read_optional(in, "sha256_from", j.sha256_from);
}

void from_json(const nlohmann::json& in, Event& e) {
  read(in, "seq", e.seq);
  read(in, "ts", e.ts);
  read(in, "job_id", e.job_id);
  read(in, "type", e.type);
  nlohmann::json payload = in.is_object() ? in : nlohmann::json::object();
  for (const char* k : {"seq", "ts", "job_id", "type"}) payload.erase(k);
  e.payload = payload.dump();
}

}  // namespace fetchq
