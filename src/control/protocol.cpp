// JSON-RPC parsing, parameter checks and the method table of the control socket.
#include "control/protocol.h"

#include <spdlog/spdlog.h>

#include "fetchq/version.h"
#include "queue/request_check.h"
#include "util/rate.h"

namespace fetchq::control {
namespace {

// JSON holds integers up to 2^64-1 as unsigned; above INT64_MAX they would wrap when read.
bool fits_int64(const json& v) {
  return v.is_number_integer() &&
         (!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX));
}

const json& field(const json& params, const char* name) {
  static const json null_value;
  auto it = params.find(name);
  return it == params.end() ? null_value : *it;
}

std::string need_string(const json& params, const char* name) {
  const json& v = field(params, name);
  if (!v.is_string()) throw BadParams{std::string("'") + name + "' must be a string"};
  return v.get<std::string>();
}

std::optional<std::string> opt_string(const json& params, const char* name) {
  const json& v = field(params, name);
  if (v.is_null()) return std::nullopt;
  if (!v.is_string()) throw BadParams{std::string("'") + name + "' must be a string"};
  return v.get<std::string>();
}

std::optional<int64_t> opt_int(const json& params, const char* name) {
  const json& v = field(params, name);
  if (v.is_null()) return std::nullopt;
  if (!v.is_number_integer()) throw BadParams{std::string("'") + name + "' must be an integer"};
  if (!fits_int64(v)) throw BadParams{std::string("'") + name + "' is out of range"};
  return v.get<int64_t>();
}

}  // namespace

int64_t read_rate(const json& v, const char* name) {
  if (v.is_string()) {
    std::string why;
    auto rate = util::parse_rate(v.get<std::string>(), &why);
    if (!rate) throw BadParams{std::string("'") + name + "': " + why};
    return *rate;
  }
  if (!v.is_number_integer() || !fits_int64(v) || v.get<int64_t>() < 0 ||
      v.get<int64_t>() > util::kMaxRate) {
    throw BadParams{std::string("'") + name +
                    "' must be bytes per second from 0 (no limit) to 2^40, or a rate such as "
                    "\"5M\""};
  }
  return v.get<int64_t>();
}

int64_t read_id(const json& params) {
  auto id = opt_int(params, "id");
  if (!id) throw BadParams{"'id' (an integer) is required"};
  return *id;
}

std::string read_url(const json& params) {
  auto url = opt_string(params, "url");
  if (!url) throw BadParams{"'url' (a string) is required"};
  return *url;
}

DownloadRequest read_download(const json& p) {
  if (!p.is_object()) throw BadParams{"each job must be an object"};
  DownloadRequest r;
  r.source = need_string(p, "source");
  r.dest = need_string(p, "dest");
  if (auto prio = opt_int(p, "priority")) {
    if (*prio < -1000000 || *prio > 1000000) throw BadParams{"'priority' is out of range"};
    r.options.priority = static_cast<int>(*prio);
  }
  r.options.access_token = opt_string(p, "access_token");
  if (r.options.access_token) {
    if (auto st = queue::check_access_token(*r.options.access_token); !st) {
      throw BadParams{"'access_token': " + st.error().message};
    }
  }
  r.options.sha256 = opt_string(p, "sha256");
  if (auto conns = opt_int(p, "connections")) {
    if (*conns < 1 || *conns > 16) throw BadParams{"'connections' must be 1 to 16"};
    r.options.connections = static_cast<int>(*conns);
  }
  if (const json& hs = field(p, "headers"); !hs.is_null()) {
    if (!hs.is_array()) throw BadParams{"'headers' must be an array of \"Name: value\" strings"};
    if (hs.size() > queue::kMaxHeaders) {
      throw BadParams{"'headers': at most " + std::to_string(queue::kMaxHeaders) + " headers per job"};
    }
    for (const auto& h : hs) {
      if (!h.is_string()) throw BadParams{"'headers' must be an array of \"Name: value\" strings"};
      auto header = queue::parse_header(h.get<std::string>());
      if (!header) throw BadParams{"'headers': " + header.error().message};
      r.options.headers.push_back(std::move(header.value()));
    }
  }
  if (const json& ms = field(p, "mirrors"); !ms.is_null()) {
    if (!ms.is_array()) throw BadParams{"'mirrors' must be an array of URL strings"};
    if (ms.size() > queue::kMaxMirrors) {
      throw BadParams{"'mirrors': at most " + std::to_string(queue::kMaxMirrors) +
                      " mirrors per job"};
    }
    for (const auto& m : ms) {
      if (!m.is_string()) throw BadParams{"'mirrors' must be an array of URL strings"};
      r.options.mirrors.push_back(m.get<std::string>());
    }
  }
  r.options.user_agent = opt_string(p, "user_agent");
  if (r.options.user_agent) {
    if (auto st = queue::check_user_agent(*r.options.user_agent); !st) {
      throw BadParams{"'user_agent': " + st.error().message};
    }
  }
  if (const json& rate = field(p, "limit_rate"); !rate.is_null()) {
    r.options.limit_rate = read_rate(rate, "limit_rate");
  }
  if (auto ie = opt_string(p, "if_exists")) {
    auto policy = parse_if_exists(*ie);
    if (!policy) throw BadParams{"'if_exists' must be error, skip, overwrite or rename"};
    r.options.if_exists = *policy;
  }
  if (auto it = p.find("allow_duplicate"); it != p.end() && !it->is_null()) {
    if (!it->is_boolean()) throw BadParams{"'allow_duplicate' must be true or false"};
    r.allow_duplicate = it->get<bool>();
  }
  return r;
}

json rpc_result(const json& id, json result) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

json rpc_error(const json& id, int code, const std::string& message) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

json rpc_error(const json& id, const Error& error) {
  return rpc_error(id, static_cast<int>(error.code), error.message);
}

std::optional<RpcRequest> parse_request(std::string_view line, json* error_response) {
  // A NUL ends the parser's input: what follows it would be ignored instead of refused.
  json doc = line.find('\0') == std::string_view::npos ? json::parse(line, nullptr, false)
                                                       : json(json::value_t::discarded);
  if (doc.is_discarded()) {
    *error_response = rpc_error(nullptr, kParseError, "parse error: not JSON");
    return std::nullopt;
  }
  if (!doc.is_object()) {
    *error_response = rpc_error(nullptr, kInvalidRequest, "invalid request: not an object");
    return std::nullopt;
  }
  json id = doc.contains("id") ? doc["id"] : json(nullptr);
  if (!id.is_null() && !id.is_string() && !id.is_number()) {
    *error_response = rpc_error(nullptr, kInvalidRequest,
                                "invalid request: id must be a string, a number or null");
    return std::nullopt;
  }
  auto v = doc.find("jsonrpc");
  if (v == doc.end() || *v != "2.0") {
    *error_response = rpc_error(id, kInvalidRequest, "invalid request: jsonrpc must be \"2.0\"");
    return std::nullopt;
  }
  auto m = doc.find("method");
  if (m == doc.end() || !m->is_string()) {
    *error_response = rpc_error(id, kInvalidRequest, "invalid request: method must be a string");
    return std::nullopt;
  }
  RpcRequest r;
  r.id = id;
  r.method = m->get<std::string>();
  auto p = doc.find("params");
  if (p == doc.end() || p->is_null()) {
    r.params = json::object();
  } else if (p->is_object()) {
    r.params = *p;
  } else {
    *error_response = rpc_error(id, kInvalidParams, "invalid params: params must be an object");
    return std::nullopt;
  }
  return r;
}

std::optional<JoinParams> parse_join(const json& params, std::string* error) {
  JoinParams jp;
  const json& ids = field(params, "ids");
  if (!ids.is_null()) {
    if (!ids.is_array()) {
      *error = "'ids' must be a list of integers";
      return std::nullopt;
    }
    for (const auto& v : ids) {
      if (!fits_int64(v)) {
        *error = "'ids' must be a list of integers (64-bit)";
        return std::nullopt;
      }
      jp.ids.push_back(v.get<int64_t>());
    }
  }
  const json& t = field(params, "timeout");
  if (!t.is_null()) {
    if (!t.is_number() || t.get<double>() < 0) {
      *error = "'timeout' must be a number of seconds >= 0";
      return std::nullopt;
    }
    jp.timeout_s = t.get<double>();
  }
  return jp;
}

std::optional<int64_t> parse_subscribe(const json& params, std::string* error) {
  const json& s = field(params, "since");
  if (s.is_null()) return int64_t{-1};  // -1: from now on
  if (!fits_int64(s) || s.get<int64_t>() < 0) {
    *error = "'since' must be an integer >= 0";
    return std::nullopt;
  }
  return s.get<int64_t>();
}

std::optional<ListFilter> parse_list_jobs(const json& p, std::string* error) {
  try {
    ListFilter f;
    if (auto s = opt_string(p, "status")) {
      auto st = parse_job_status(*s);
      if (!st) throw BadParams{"unknown status '" + s->substr(0, 100) + "'"};
      f.status = st;
    }
    f.after_id = opt_int(p, "after_id").value_or(0);
    f.limit = opt_int(p, "limit").value_or(-1);
    return f;
  } catch (const BadParams& e) {
    *error = e.message;
    return std::nullopt;
  }
}

std::optional<PruneFilter> parse_prune_jobs(const json& p, std::string* error) {
  PruneFilter f;
  if (!p.is_object()) {
    if (p.is_null() || (p.is_array() && p.empty())) return f;
    *error = "params must be an object";
    return std::nullopt;
  }
  if (auto it = p.find("status"); it != p.end() && !it->is_null()) {
    std::vector<json> names = it->is_array() ? it->get<std::vector<json>>() : std::vector<json>{*it};
    for (const auto& n : names) {
      auto st = n.is_string() ? parse_job_status(n.get<std::string>()) : std::nullopt;
      if (!st || (*st != JobStatus::kCompleted && *st != JobStatus::kCancelled && *st != JobStatus::kError)) {
        *error = "'status' must name ended statuses: completed, cancelled or error";
        return std::nullopt;
      }
      f.statuses.push_back(*st);
    }
  }
  if (auto it = p.find("ended_before"); it != p.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().size() < 10 || it->get<std::string>().size() > 40) {
      *error = "'ended_before' must be an ISO 8601 UTC time such as 2026-12-01T00:00:00.000Z";
      return std::nullopt;
    }
    f.ended_before = it->get<std::string>();
  }
  return f;
}

std::string job_list_head(const json& id) {
  return "{\"id\":" + answer_line(id) + ",\"jsonrpc\":\"2.0\",\"result\":[";
}

json stats_json(const QueueStats& s) {
  json rates = json::array();
  for (const auto& r : s.job_rates) rates.push_back({{"id", r.id}, {"bytes_per_second", r.bytes_per_second}});
  return json{{"waiting", s.waiting},     {"running", s.running},
              {"paused", s.paused},       {"completed", s.completed},
              {"cancelled", s.cancelled}, {"error", s.error},
              {"bytes_per_second", s.bytes_per_second},
              {"uptime_seconds", s.uptime_seconds},
              {"job_rates", std::move(rates)},
              {"version", kVersion}};
}

std::optional<SetLimitsParams> parse_set_limits(const json& params, std::string* error) {
  try {
    SetLimitsParams out;
    const json& rate = field(params, "limit_rate");
    if (rate.is_null()) throw BadParams{"'limit_rate' (bytes per second, 0 for none) is required"};
    out.limit_rate = read_rate(rate, "limit_rate");
    out.id = opt_int(params, "id");
    for (const auto& [key, value] : params.items()) {
      if (key != "limit_rate" && key != "id") throw BadParams{"unknown parameter '" + key + "'"};
    }
    return out;
  } catch (const BadParams& e) {
    *error = e.message;
    return std::nullopt;
  }
}

json limits_json(int64_t queue_limit, const std::vector<Job>& limited_jobs) {
  json jobs = json::array();
  for (const auto& j : limited_jobs) {
    jobs.push_back({{"id", j.id}, {"limit_rate", j.limit_rate}, {"status", to_string(j.status)}});
  }
  return json{{"limit_rate", queue_limit}, {"jobs", std::move(jobs)}};
}

std::string answer_line(const json& message) {
  return message.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace fetchq::control
