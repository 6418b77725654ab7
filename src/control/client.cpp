// The command line's side of the control socket.
#include "control/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "control/protocol.h"
#include "util/fs.h"

namespace fetchq::control {

std::string default_socket_path() {
  if (const char* s = std::getenv("FETCHQ_SOCKET"); s && *s) return s;
  if (util::exists("/run/fetchq/fetchqd.sock")) return "/run/fetchq/fetchqd.sock";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/fetchq/fetchqd.sock";
  return "/run/fetchq/fetchqd.sock";
}

Result<Client> Client::connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return make_error(ErrorCode::kInvalidArgument, "socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(ErrorCode::kIo, util::errno_message("socket", path, errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(ErrorCode::kIo, "cannot reach fetchqd at " + path + ": " + std::strerror(err) +
                                          " (is it running? --socket or $FETCHQ_SOCKET name another)");
  }
  return Client(fd);
}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), next_id_(other.next_id_), buf_(std::move(other.buf_)) {}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

Status Client::send(const std::string& method, nlohmann::json params) {
  nlohmann::json req{{"jsonrpc", "2.0"}, {"id", next_id_++}, {"method", method}, {"params", std::move(params)}};
  std::string line = req.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(ErrorCode::kIo, std::string("lost the connection to fetchqd: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return Ok{};
}

Result<std::optional<nlohmann::json>> Client::read_message(int timeout_ms) {
  size_t scanned = 0;  // a long answer arrives in many pieces: look at each byte once
  for (;;) {
    auto nl = buf_.find('\n', scanned);
    scanned = buf_.size();
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      auto doc = nlohmann::json::parse(line, nullptr, false);
      if (doc.is_discarded()) return make_error(ErrorCode::kIo, "fetchqd sent a line that is not JSON");
      return std::optional<nlohmann::json>(std::move(doc));
    }
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r == 0) return std::optional<nlohmann::json>();
    if (r < 0) {
      if (errno == EINTR) return make_error(ErrorCode::kIo, "interrupted");
      return make_error(ErrorCode::kIo, std::strerror(errno));
    }
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n == 0) return make_error(ErrorCode::kIo, "fetchqd closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(ErrorCode::kIo, std::string("lost the connection to fetchqd: ") + std::strerror(errno));
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

Result<nlohmann::json> Client::call(const std::string& method, nlohmann::json params) {
  if (auto st = send(method, std::move(params)); !st) return st.error();
  for (;;) {
    auto msg = read_message();
    if (!msg) return msg.error();
    if (!msg.value()) return make_error(ErrorCode::kIo, "no answer from fetchqd");
    auto& m = *msg.value();
    if (m.contains("method")) continue;  // an event notification of a subscription
    return answer_of(m);
  }
}

Result<nlohmann::json> Client::answer_of(nlohmann::json& message) {
  if (message.contains("error")) {
    auto& e = message["error"];
    int code = e.value("code", 0);
    // Domain errors keep their ErrorCode; protocol errors become kInvalidArgument.
    ErrorCode ec = code >= 1 && code <= 9 ? static_cast<ErrorCode>(code) : ErrorCode::kInvalidArgument;
    return make_error(ec, e.value("message", std::string("unknown error")));
  }
  auto it = message.find("result");
  if (it == message.end()) return nlohmann::json();
  return std::move(*it);
}

// ---- Typed calls

namespace {

using json = nlohmann::json;

// Reads an answer's result as T; a result of another shape is an error naming the method.
template <class T>
Result<T> typed(const char* method, Result<json> answer) {
  if (!answer) return answer.error();
  try {
    return answer.value().get<T>();
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kIo, std::string("fetchqd's answer to ") + method + " is not understood: " + e.what());
  }
}

json request_json(const DownloadRequest& r) {
  json j{{"source", r.source}, {"dest", r.dest}, {"priority", r.options.priority},
         {"if_exists", std::string(to_string(r.options.if_exists))}};
  if (r.options.access_token) j["access_token"] = *r.options.access_token;
  if (r.options.sha256) j["sha256"] = *r.options.sha256;
  if (r.allow_duplicate) j["allow_duplicate"] = true;
  if (r.options.connections) j["connections"] = *r.options.connections;
  if (!r.options.headers.empty()) {
    auto& hs = j["headers"] = json::array();
    for (const auto& h : r.options.headers) hs.push_back(h.name + ": " + h.value);
  }
  if (r.options.user_agent) j["user_agent"] = *r.options.user_agent;
  if (!r.options.mirrors.empty()) j["mirrors"] = r.options.mirrors;
  if (r.options.limit_rate > 0) j["limit_rate"] = r.options.limit_rate;
  return j;
}

}  // namespace

json to_json_value(const DaemonStats& s) {
  json j = stats_json(s.queue);
  j["version"] = s.version;
  return j;
}

DaemonStats daemon_stats_from_json(const json& in) {
  DaemonStats s;
  auto& q = s.queue;
  q.waiting = in.at("waiting").get<int64_t>();
  q.running = in.at("running").get<int64_t>();
  q.paused = in.at("paused").get<int64_t>();
  q.completed = in.at("completed").get<int64_t>();
  q.cancelled = in.at("cancelled").get<int64_t>();
  q.error = in.at("error").get<int64_t>();
  q.bytes_per_second = in.value("bytes_per_second", 0.0);
  q.uptime_seconds = in.value("uptime_seconds", 0.0);
  if (auto it = in.find("job_rates"); it != in.end() && it->is_array()) {
    for (const auto& r : *it) q.job_rates.push_back(JobRate{r.at("id").get<int64_t>(), r.value("bytes_per_second", 0.0)});
  }
  s.version = in.value("version", std::string());
  return s;
}

Result<Job> Client::download(const DownloadRequest& request) { return download_json(request_json(request)); }

Result<Job> Client::download_json(json job) { return typed<Job>("download", call("download", std::move(job))); }

Result<std::vector<Job>> Client::download_batch(const std::vector<DownloadRequest>& requests) {
  json jobs = json::array();
  for (const auto& r : requests) jobs.push_back(request_json(r));
  if (auto st = send_download_batch(std::move(jobs)); !st) return st.error();
  return download_batch_answer();
}

Status Client::send_download_batch(json jobs) { return send("download_batch", json{{"jobs", std::move(jobs)}}); }

Result<std::vector<Job>> Client::download_batch_answer() {
  for (;;) {
    auto msg = read_message();
    if (!msg) return msg.error();
    if (!msg.value()) return make_error(ErrorCode::kIo, "no answer from fetchqd");
    if (msg.value()->contains("method")) continue;  // not an answer
    return typed<std::vector<Job>>("download_batch", answer_of(*msg.value()));
  }
}

Result<std::vector<Job>> Client::list_jobs(const ListFilter& f) {
  json p{{"after_id", f.after_id}, {"limit", f.limit}};
  if (f.status) p["status"] = std::string(to_string(*f.status));
  return typed<std::vector<Job>>("list_jobs", call("list_jobs", std::move(p)));
}

Result<Job> Client::id_to_job(int64_t id) { return typed<Job>("get_job", call("get_job", json{{"id", id}})); }
Result<Job> Client::cancel_job(int64_t id) { return typed<Job>("cancel_job", call("cancel_job", json{{"id", id}})); }
Result<Job> Client::pause_job(int64_t id) { return typed<Job>("pause_job", call("pause_job", json{{"id", id}})); }
Result<Job> Client::resume_job(int64_t id) { return typed<Job>("resume_job", call("resume_job", json{{"id", id}})); }
Result<Job> Client::retry_job(int64_t id) { return typed<Job>("retry_job", call("retry_job", json{{"id", id}})); }
Result<Job> Client::set_url(int64_t id, const std::string& url) {
  return typed<Job>("set_url", call("set_url", json{{"id", id}, {"url", url}}));
}

Result<int64_t> Client::cancel_all_jobs() {
  return typed<int64_t>("cancel_all_jobs", call("cancel_all_jobs", json::object()));
}

Result<int64_t> Client::prune_jobs(const PruneFilter& filter) {
  json p = json::object();
  if (!filter.statuses.empty()) {
    json names = json::array();
    for (auto st : filter.statuses) names.push_back(std::string(to_string(st)));
    p["status"] = std::move(names);
  }
  if (filter.ended_before) p["ended_before"] = *filter.ended_before;
  return typed<int64_t>("prune_jobs", call("prune_jobs", std::move(p)));
}

Result<bool> Client::join(const std::vector<int64_t>& ids, std::optional<double> timeout_s) {
  json p = json::object();
  if (!ids.empty()) p["ids"] = ids;
  if (timeout_s) p["timeout"] = *timeout_s;
  auto r = call("join", std::move(p));
  if (!r) return r.error();
  return r.value().is_object() && r.value().value("done", false);
}

Result<DaemonStats> Client::stats() {
  auto r = call("stats", json::object());
  if (!r) return r.error();
  try {
    return daemon_stats_from_json(r.value());
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kIo, std::string("fetchqd's answer to stats is not understood: ") + e.what());
  }
}

Status Client::subscribe(int64_t since) {
  json p = json::object();
  if (since >= 0) p["since"] = since;
  return send("subscribe", std::move(p));
}

Result<SubscriptionMessage> Client::next_event() {
  for (;;) {
    auto m = read_message();
    if (!m) return m.error();
    if (!m.value()) continue;
    json& msg = *m.value();
    if (msg.contains("error")) {
      // subscribe refused; the message as fetchqd wrote it
      int code = msg["error"].value("code", 0);
      ErrorCode ec = code >= 1 && code <= 9 ? static_cast<ErrorCode>(code) : ErrorCode::kInvalidArgument;
      return make_error(ec, msg["error"].value("message", std::string("subscribe failed")));
    }
    SubscriptionMessage out;
    if (msg.contains("result")) {
      const json& r = msg["result"];
      out.subscribed = Subscription{r.value("since", int64_t{0}), r.value("last_seq", int64_t{0}),
                                    r.value("first_seq", int64_t{0})};
      return out;
    }
    if (msg.value("method", std::string()) != "event") continue;
    try {
      out.event = msg["params"].get<Event>();
    } catch (const json::exception& e) {
      return make_error(ErrorCode::kIo, std::string("fetchqd sent an event that is not understood: ") + e.what());
    }
    return out;
  }
}

}  // namespace fetchq::control
