// The control socket: epoll I/O thread, request workers and the join/subscribe waiter.
#include "control/server.h"

#include <spdlog/spdlog.h>
#include <malloc.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "control/protocol.h"
#include "queue/join_walk.h"
#include "util/fs.h"
#include "util/thread_name.h"

namespace fetchq::control {
namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  uint64_t key = 0;
  uid_t uid = 0;
  std::string in;  // I/O thread only

  std::mutex mu;  // guards everything below
  std::string out;
  std::deque<std::string> lines;  // requests waiting for their turn
  bool busy = false;              // a request of this connection is being served
  bool close_after_flush = false;
  bool dead = false;
  bool subscribed = false;
  int64_t cursor = 0;  // last event seq sent to a subscriber
  // Waiting for its output to drain before it is served again (a page of a listing, or any
  // request while all connections' output is over the budget); the I/O thread resumes it.
  bool stalled = false;
  // A list_jobs answer written a page at a time: its line is open in `out` until the last page.
  struct Listing {
    ListFilter filter;
    int64_t left = -1;  // jobs still to send; -1: no limit
    bool first = true;  // no job written yet
  };
  std::optional<Listing> listing;
};
using ConnPtr = std::shared_ptr<Conn>;

struct Waiter {
  ConnPtr conn;
  json id;
  std::vector<int64_t> ids;  // sorted, without repeats
  std::optional<Clock::time_point> deadline;
  size_t ended = 0;  // ids[0..ended) were seen ended (see join_done)
};

// A listing is written in pages of this many jobs, the next one only once the connection's
// output is below kListingLowWater: however long the queue, an answer in progress holds about
// one page per connection.
constexpr int64_t kListingPage = 500;
constexpr size_t kListingLowWater = 256 << 10;
// A connection with this many requests waiting is not read further until some are served.
constexpr size_t kMaxPendingLines = 64;

class Server final : public ControlServer {
 public:
  Server(ServerOptions o, DownloadQueue* q, int listen_fd)
      : opts_(std::move(o)), q_(q), listen_fd_(listen_fd) {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    add_fd(listen_fd_, EPOLLIN, kListenKey);
    add_fd(wake_fd_, EPOLLIN, kWakeKey);
  }

  ~Server() override {
    stop();
    ::close(epoll_fd_);
    ::close(wake_fd_);
  }

  void start() override {
    io_ = std::thread([this] {
      util::name_this_thread("fetchq-io");
      io_loop();
    });
    for (int i = 0; i < opts_.workers; ++i) workers_.emplace_back([this] {
        util::name_this_thread("fetchq-rpc");
        worker_loop();
      });
    waiter_ = std::thread([this] {
      util::name_this_thread("fetchq-waiter");
      waiter_loop();
    });
  }

  void stop() override {
    {
      std::lock_guard lk(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    task_cv_.notify_all();
    wait_cv_.notify_all();
    wake_io();
    if (io_.joinable()) io_.join();
    for (auto& w : workers_) w.join();
    workers_.clear();
    if (waiter_.joinable()) waiter_.join();
    for (auto& [k, c] : conns_) ::close(c->fd);
    conns_.clear();
    ::close(listen_fd_);
    ::unlink(opts_.socket_path.c_str());
  }

  void notify_change() override {
    {
      std::lock_guard lk(mu_);
      changed_ = true;
    }
    wait_cv_.notify_one();
  }

  size_t connections() override {
    std::lock_guard lk(mu_);
    return conn_count_;
  }

 private:
  static constexpr uint64_t kListenKey = 0;
  static constexpr uint64_t kWakeKey = 1;

  void add_fd(int fd, uint32_t events, uint64_t key) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void wake_io() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }

  // ---- I/O thread
  void io_loop() {
    epoll_event events[64];
    for (;;) {
      {
        std::lock_guard lk(mu_);
        if (stopped_) return;
      }
      int n = ::epoll_wait(epoll_fd_, events, 64, 1000);
      for (int i = 0; i < n; ++i) {
        uint64_t key = events[i].data.u64;
        if (key == kListenKey) {
          accept_all();
        } else if (key == kWakeKey) {
          uint64_t v;
          while (::read(wake_fd_, &v, sizeof v) > 0) {
          }
        } else {
          auto it = conns_.find(key);
          if (it == conns_.end()) continue;
          ConnPtr c = it->second;
          if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) read_from(c);
        }
      }
      flush_all();
    }
  }

  void accept_all() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      if (conns_.size() >= opts_.max_connections) {
        spdlog::warn("control socket: too many connections ({}), refusing one", conns_.size());
        ::close(fd);
        continue;
      }
      auto c = std::make_shared<Conn>();
      c->fd = fd;
      c->key = next_key_++;
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) c->uid = cred.uid;
      conns_[c->key] = c;
      add_fd(fd, EPOLLIN | EPOLLRDHUP, c->key);
      std::lock_guard lk(mu_);
      conn_count_ = conns_.size();
    }
  }

  // Whether the I/O thread takes more requests from `c` now: not while many wait for their
  // turn, nor while its answers wait and all output together is over the budget. Caller holds
  // c->mu.
  bool readable(const Conn& c) const {
    return c.lines.size() < kMaxPendingLines && (c.out.empty() || !over_budget());
  }
  bool over_budget() const { return queued_.load() > opts_.max_total_output_bytes; }

  void read_from(const ConnPtr& c) {
    char buf[65536];
    for (;;) {
      {
        std::lock_guard lk(c->mu);
        if (!readable(*c)) return;  // flush_all takes EPOLLIN away until it may read again
      }
      ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
      if (n > 0) {
        size_t start = c->in.size();
        c->in.append(buf, static_cast<size_t>(n));
        size_t pos;
        size_t from = 0;
        while ((pos = c->in.find('\n', std::max(start, from))) != std::string::npos) {
          std::string line = c->in.substr(from, pos - from);
          from = pos + 1;
          start = from;
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (line.find_first_not_of(" \t") != std::string::npos) enqueue_line(c, std::move(line));
        }
        c->in.erase(0, from);
        if (c->in.size() > kMaxRequestBytes) {
          // Refuse before buffering more of it; the client cannot be read any further.
          send(c, rpc_error(nullptr, kInvalidRequest,
                            "request too large: the limit is " + std::to_string(kMaxRequestBytes) +
                                " bytes a line"),
               true);
          c->in.clear();
          ::shutdown(c->fd, SHUT_RD);
          return;
        }
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      // Closed by the peer (or an error).
      bool pending;
      {
        std::lock_guard lk(c->mu);
        pending = c->busy || !c->out.empty();
        if (!pending) c->dead = true;
        c->close_after_flush = true;
      }
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
      if (!pending) close_conn(c);
      return;
    }
  }

  void close_conn(const ConnPtr& c) {
    {
      std::lock_guard lk(c->mu);
      c->dead = true;
    }
    {
      std::lock_guard lk(c->mu);
      queued_ -= c->out.size();
      c->out.clear();
    }
    if (conns_.erase(c->key)) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
      ::close(c->fd);
    }
    std::lock_guard lk(mu_);
    conn_count_ = conns_.size();
  }

  void flush_all() {
    std::vector<ConnPtr> to_close;
    for (auto& [k, c] : conns_) {
      std::lock_guard lk(c->mu);
      while (!c->out.empty()) {
        ssize_t n = ::send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          c->out.erase(0, static_cast<size_t>(n));
          queued_ -= static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        c->dead = true;
        break;
      }
      if (c->dead || (c->close_after_flush && c->out.empty() && !c->busy)) to_close.push_back(c);
    }
    for (auto& c : to_close) close_conn(c);
    // Second pass, once every connection wrote what it could: the budget is as low as it gets.
    std::vector<ConnPtr> to_resume;
    for (auto& [k, c] : conns_) {
      std::lock_guard lk(c->mu);
      if (c->stalled && may_serve(*c)) {
        c->stalled = false;
        to_resume.push_back(c);
      }
      epoll_event ev{};
      // Not reading: neither EPOLLIN nor EPOLLRDHUP, which would fire until it reads again.
      bool reading = readable(*c) && !c->close_after_flush;
      ev.events = (reading ? static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP) : 0u) |
                  (c->out.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
      ev.data.u64 = c->key;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
    }
    for (auto& c : to_resume) post(c);
  }

  // Whether a worker may serve `c` now (see Conn::stalled). Caller holds c->mu.
  bool may_serve(const Conn& c) const {
    if (c.listing && c.out.size() > kListingLowWater) return false;
    return c.out.empty() || !over_budget();
  }

  // Queues a response; `close` ends the connection once it is written. Returns its size.
  size_t send(const ConnPtr& c, const json& msg, bool close = false) {
    return send(c, answer_line(msg), close);
  }

  size_t send(const ConnPtr& c, std::string line, bool close = false) {
    line += '\n';
    return send_raw(c, std::move(line), close);
  }

  // Queues text as it is (a part of a line, for a listing written a page at a time).
  size_t send_raw(const ConnPtr& c, std::string line, bool close = false) {
    {
      std::lock_guard lk(c->mu);
      if (c->dead) return 0;
      if (close) c->close_after_flush = true;
      append_out(*c, line);
    }
    wake_io();
    return line.size();
  }

  // Caller holds c.mu.
  void append_out(Conn& c, const std::string& text) {
    c.out += text;
    queued_ += text.size();
    if (c.out.size() > opts_.max_output_bytes) {
      spdlog::warn("control socket: dropping a client that does not read its answers");
      c.dead = true;
    }
  }

  void enqueue_line(const ConnPtr& c, std::string line) {
    bool schedule = false;
    {
      std::lock_guard lk(c->mu);
      c->lines.push_back(std::move(line));
      if (!c->busy) {
        c->busy = true;
        schedule = true;
      }
    }
    if (schedule) post(c);
  }

  void post(const ConnPtr& c) {
    {
      std::lock_guard lk(mu_);
      tasks_.push_back(c);
    }
    task_cv_.notify_one();
  }

  // ---- workers: serve the next line of a connection
  void worker_loop() {
    for (;;) {
      ConnPtr c;
      {
        std::unique_lock lk(mu_);
        task_cv_.wait(lk, [this] { return stopped_ || !tasks_.empty(); });
        if (stopped_) return;
        c = tasks_.front();
        tasks_.pop_front();
      }
      serve_one(c);
    }
  }

  // Serves one line, then hands the connection back (or on to the waiter for join).
  void serve_one(const ConnPtr& c) {
    std::string line;
    {
      std::lock_guard lk(c->mu);
      if (c->dead) {
        c->busy = false;
        c->listing.reset();
        return;
      }
      if (!may_serve(*c)) {
        c->stalled = true;  // the I/O thread posts it again once its output drained
        wake_io();
        return;
      }
      if (c->listing) {
        // fall through to the next page below, outside the lock
      } else if (c->lines.empty()) {
        c->busy = false;
        return;
      } else {
        line = std::move(c->lines.front());
        c->lines.pop_front();
      }
    }
    if (line.empty()) {
      if (list_page(c)) {
        post(c);  // more pages: after the others' turns
      } else {
        resume(c);
      }
      return;
    }
    json err;
    auto req = parse_request(line, &err);
    bool parked = false;
    if (!req) {
      send(c, err);
    } else if (req->method == "join") {
      std::string why;
      auto jp = parse_join(req->params, &why);
      if (!jp) {
        send(c, rpc_error(req->id, kInvalidParams, "invalid params: " + why));
      } else if (auto unknown = unknown_ids(jp->ids); !unknown.empty()) {
        send(c, rpc_error(req->id, make_error(ErrorCode::kNotFound, unknown)));
      } else {
        Waiter w{c, req->id, queue::sorted_unique(jp->ids), std::nullopt};
        if (jp->timeout_s) {
          w.deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(*jp->timeout_s * 1000));
        }
        std::lock_guard lk(mu_);
        waiters_.push_back(std::move(w));
        changed_ = true;
        parked = true;
      }
    } else if (req->method == "list_jobs") {
      std::string why;
      auto f = parse_list_jobs(req->params, &why);
      if (!f) {
        send(c, rpc_error(req->id, kInvalidParams, "invalid params: " + why));
      } else {
        {
          std::lock_guard lk(c->mu);
          c->listing = Conn::Listing{*f, f->limit < 0 ? -1 : f->limit, true};
        }
        send_raw(c, job_list_head(req->id));
        if (list_page(c)) {
          post(c);
          return;
        }
      }
    } else if (req->method == "subscribe") {
      std::string why;
      auto since = parse_subscribe(req->params, &why);
      if (!since) {
        send(c, rpc_error(req->id, kInvalidParams, "invalid params: " + why));
      } else {
        int64_t head = q_->last_event_seq();
        int64_t from = *since < 0 ? head : *since;
        send(c, rpc_result(req->id, json{{"since", from}, {"last_seq", head}, {"first_seq", q_->first_event_seq()}}));
        {
          std::lock_guard lk(c->mu);
          c->subscribed = true;
          c->cursor = from;
        }
        {
          std::lock_guard lk(mu_);
          subscribers_.push_back(c);
          changed_ = true;
        }
        wait_cv_.notify_one();
      }
    } else {
      // A big batch or listing leaves megabytes of freed JSON in malloc's arenas; hand them
      // back so the daemon's memory follows its running jobs, not its largest request.
      if (send(c, dispatch(*q_, *req, c->uid)) > (1u << 20)) ::malloc_trim(0);
    }
    if (parked) {
      wait_cv_.notify_one();
      return;  // the waiter resumes this connection after answering
    }
    resume(c);
  }

  // Writes the next page of c's listing; false once the answer is complete.
  bool list_page(const ConnPtr& c) {
    Conn::Listing l;
    {
      std::lock_guard lk(c->mu);
      l = *c->listing;
    }
    ListFilter f = l.filter;
    f.limit = l.left < 0 ? kListingPage : std::min(l.left, kListingPage);
    std::vector<Job> jobs;
    std::string text;
    try {
      jobs = q_->list_jobs(f);
    } catch (const std::exception& e) {
      // The line is already open and cannot carry an error: end the connection rather than
      // close the list short, so the client cannot take part of the queue for all of it.
      spdlog::error("list_jobs failed: {}; closing that connection", e.what());
      std::lock_guard lk(c->mu);
      c->listing.reset();
      c->dead = true;
      return false;
    }
    text.reserve(jobs.size() * 400 + 4);
    for (const auto& j : jobs) {
      if (!l.first) text += ',';
      l.first = false;
      append_json(text, j);
    }
    if (l.left > 0) l.left -= static_cast<int64_t>(jobs.size());
    bool more = static_cast<int64_t>(jobs.size()) == f.limit && l.left != 0 && f.limit > 0;
    if (!more) text += "]}\n";
    if (!jobs.empty()) l.filter.after_id = jobs.back().id;
    {
      std::lock_guard lk(c->mu);
      if (more) {
        c->listing = l;
      } else {
        c->listing.reset();
      }
    }
    send_raw(c, std::move(text));
    if (!more) {
      std::lock_guard lk(mu_);
      changed_ = true;  // a subscriber on this connection waits for the line to end
      wait_cv_.notify_one();
    }
    return more;
  }

  // "" when every id names a job; else the message naming the unknown ones (the first few).
  std::string unknown_ids(const std::vector<int64_t>& ids) {
    std::vector<int64_t> unknown;
    size_t count = 0;
    for (int64_t id : queue::sorted_unique(ids)) {
      if (q_->id_to_job(id)) continue;
      if (++count <= 5) unknown.push_back(id);
    }
    if (count == 0) return "";
    std::string msg = count == 1 ? "no job with id " : "no jobs with ids ";
    for (size_t i = 0; i < unknown.size(); ++i) msg += (i ? ", " : "") + std::to_string(unknown[i]);
    if (count > unknown.size()) msg += " (and " + std::to_string(count - unknown.size()) + " more)";
    return msg;
  }

  // After an answer: serve the connection's next line, if any.
  void resume(const ConnPtr& c) {
    bool more;
    {
      std::lock_guard lk(c->mu);
      more = !c->lines.empty() && !c->dead;
      if (!more) c->busy = false;
    }
    if (more) {
      post(c);
    } else {
      wake_io();  // it may be waiting to close
    }
  }

  // ---- waiter: answers join and feeds subscribers when the queue changes
  // The waiter keeps its place among the ids between changes (see queue/join_walk.h); once
  // every id was seen ended, the queue's own join confirms it.
  bool join_done(Waiter& w) {
    if (w.ids.empty()) return q_->join(std::chrono::milliseconds(0), {});
    if (!queue::walk_past_ended(w.ids, &w.ended, [&](int64_t id) { return q_->id_to_job(id); })) return false;
    if (q_->join(std::chrono::milliseconds(0), w.ids)) return true;
    w.ended = 0;
    return false;
  }

  void waiter_loop() {
    for (;;) {
      std::vector<Waiter> waiters;
      std::vector<ConnPtr> subs;
      {
        std::unique_lock lk(mu_);
        auto next = Clock::time_point::max();
        for (auto& w : waiters_) {
          if (w.deadline) next = std::min(next, *w.deadline);
        }
        if (!changed_ && !stopped_) {
          if (next == Clock::time_point::max()) {
            wait_cv_.wait(lk, [this] { return changed_ || stopped_; });
          } else {
            wait_cv_.wait_until(lk, next, [this] { return changed_ || stopped_; });
          }
        }
        if (stopped_) return;
        changed_ = false;
        waiters.swap(waiters_);
        subs = subscribers_;
      }
      std::vector<Waiter> still;
      auto now = Clock::now();
      for (auto& w : waiters) {
        bool dead;
        {
          std::lock_guard lk(w.conn->mu);
          dead = w.conn->dead || w.conn->close_after_flush;  // nobody left to answer
        }
        if (dead) continue;
        bool done = join_done(w);
        if (done || (w.deadline && now >= *w.deadline)) {
          send(w.conn, rpc_result(w.id, json{{"done", done}}));
          resume(w.conn);
        } else {
          still.push_back(std::move(w));
        }
      }
      bool behind = false;
      std::vector<ConnPtr> gone;  // dead subscribers, removed below
      for (auto& c : subs) {
        int64_t cursor;
        {
          std::lock_guard lk(c->mu);
          if (c->dead) {
            gone.push_back(c);
            continue;
          }
          cursor = c->cursor;
          if (c->listing) continue;  // not inside its listing's line: resumed when it ends
          if (c->out.size() > opts_.max_output_bytes / 2) {  // let it drain first
            behind = true;
            continue;
          }
        }
        auto events = q_->events_since(cursor, 500, std::chrono::milliseconds(0));
        std::string text;
        for (const auto& e : events) {
          text += answer_line(json{{"jsonrpc", "2.0"}, {"method", "event"}, {"params", json(e)}});
          text += '\n';
        }
        if (!events.empty()) {
          {
            // Checked and queued at once: a listing may have opened its line since the check
            // above, and an event must not land inside it (its end sets changed_ again).
            std::lock_guard lk(c->mu);
            if (c->listing || c->dead) continue;
            c->cursor = events.back().seq;
            append_out(*c, text);
          }
          wake_io();
          behind = behind || events.size() == 500;
        }
      }
      std::lock_guard lk(mu_);
      for (auto& w : still) waiters_.push_back(std::move(w));
      // Only the dead ones leave: a client that subscribed while this pass ran is in
      // subscribers_ but not in subs, and must stay (its own pass comes next, changed_ is set).
      if (!gone.empty()) {
        std::erase_if(subscribers_, [&](const ConnPtr& c) {
          return std::find(gone.begin(), gone.end(), c) != gone.end();
        });
      }
      if (behind) changed_ = true;
    }
  }

  ServerOptions opts_;
  DownloadQueue* q_;
  int listen_fd_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::map<uint64_t, ConnPtr> conns_;  // I/O thread only
  uint64_t next_key_ = 2;

  std::mutex mu_;
  std::condition_variable task_cv_;
  std::condition_variable wait_cv_;
  std::deque<ConnPtr> tasks_;
  std::vector<Waiter> waiters_;
  std::vector<ConnPtr> subscribers_;
  bool changed_ = false;
  bool stopped_ = false;
  std::atomic<size_t> queued_{0};  // bytes in every Conn::out
  size_t conn_count_ = 0;

  std::thread io_;
  std::vector<std::thread> workers_;
  std::thread waiter_;
};

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::listen(ServerOptions o, DownloadQueue* q) {
  const std::string& path = o.socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return make_error(ErrorCode::kInvalidArgument, "socket path is empty or too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (auto st = util::make_parent_dirs(path); !st) return st.error();
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    // Only a socket left by a daemon that is gone may be replaced: never a file (a database
    // given as --socket by mistake) or anything else found at that path.
    if (!S_ISSOCK(st.st_mode)) {
      return make_error(ErrorCode::kInvalidArgument,
                        "socket path " + path + " exists and is not a socket; not removing it");
    }
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(probe);
    if (live) {
      return make_error(ErrorCode::kBusy, "another fetchqd is already listening on " + path);
    }
    ::unlink(path.c_str());  // stale, from a daemon that did not stop cleanly
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(ErrorCode::kIo, util::errno_message("socket", path, errno));
  mode_t old = ::umask(0117);  // 0660: the owner and its group
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (rc != 0) {
    ::close(fd);
    return make_error(ErrorCode::kIo, util::errno_message("bind", path, err));
  }
  ::chmod(path.c_str(), 0660);
  if (::listen(fd, 128) != 0) {
    err = errno;
    ::close(fd);
    return make_error(ErrorCode::kIo, util::errno_message("listen", path, err));
  }
  return std::unique_ptr<ControlServer>(std::make_unique<Server>(std::move(o), q, fd));
}

}  // namespace fetchq::control
