// The control protocol: JSON-RPC 2.0 messages and the checks of their parameters (the methods
// themselves are in control/dispatcher.h).
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "fetchq/queue.h"

namespace fetchq::control {

using json = nlohmann::json;

inline constexpr size_t kMaxRequestBytes = 4 << 20;  // longer lines get -32600 and are dropped

enum RpcCode {
  kParseError = -32700,
  kInvalidRequest = -32600,
  kMethodNotFound = -32601,
  kInvalidParams = -32602,
  kInternalError = -32603,
};

struct RpcRequest {
  json id;  // null for a notification-less request we still answer
  std::string method;
  json params;  // always an object
};

json rpc_result(const json& id, json result);
json rpc_error(const json& id, int code, const std::string& message);
json rpc_error(const json& id, const Error& error);  // domain errors: code = ErrorCode (>= 1)

// Parses one line. On failure *error_response holds the answer to send.
std::optional<RpcRequest> parse_request(std::string_view line, json* error_response);

// Parameters of join and subscribe, checked; std::nullopt with *error set when invalid.
struct JoinParams {
  std::vector<int64_t> ids;
  std::optional<double> timeout_s;
};
std::optional<JoinParams> parse_join(const json& params, std::string* error);
std::optional<int64_t> parse_subscribe(const json& params, std::string* error);
// list_jobs: status, after_id, limit (-1, the default, for no limit).
std::optional<ListFilter> parse_list_jobs(const json& params, std::string* error);
// prune_jobs' params: optional `status` (an ended status, or a list of them) and `ended_before`
// (ISO 8601 UTC); nullopt with *error for anything else.
std::optional<PruneFilter> parse_prune_jobs(const json& params, std::string* error);
// set_limits' params: `limit_rate` (bytes per second, an integer, or a string such as "5M";
// 0 lifts the limit) and optional `id` (a job: its own limit; none: the queue's).
struct SetLimitsParams {
  std::optional<int64_t> id;
  int64_t limit_rate = 0;
};
std::optional<SetLimitsParams> parse_set_limits(const json& params, std::string* error);
// The answer of get_limits and set_limits: {"limit_rate": N, "jobs": [{"id", "limit_rate",
// "status"}]}, the jobs being those not ended that have a limit of their own.
json limits_json(int64_t queue_limit, const std::vector<Job>& limited_jobs);
// The opening of a list_jobs answer, up to and including '[': the jobs follow, comma-separated,
// then "]}".
std::string job_list_head(const json& id);

// Thrown by read_id and read_download; the dispatcher answers it with -32602 "invalid params".
struct BadParams {
  std::string message;
};
// A rate given as bytes per second (an integer) or as text ("500k", "5M"), checked.
int64_t read_rate(const json& value, const char* name);
// params' "id", an integer (get_job, cancel_job, ...).
int64_t read_id(const json& params);
// set_url: {"id": N, "url": "..."}.
std::string read_url(const json& params);
// One job of download or download_batch: source, dest, priority, access_token, sha256,
// if_exists, connections, headers (["Name: value", ...]), user_agent, mirrors (["URL", ...]),
// checked.
DownloadRequest read_download(const json& job);

// One answer as its line of text (without the newline). Invalid UTF-8 in strings becomes U+FFFD.
std::string answer_line(const json& message);

// stats as SPEC shows it.
json stats_json(const QueueStats& stats);

}  // namespace fetchq::control
