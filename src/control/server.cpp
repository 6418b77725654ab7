// The control socket: epoll I/O thread and request workers, one transport of the Dispatcher.
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

#include "control/dispatcher.h"
#include "control/protocol.h"
#include "util/fs.h"
#include "util/thread_name.h"

namespace fetchq::control {
namespace {

class Server;

// One client: its buffers, and the Session the dispatcher answers through.
struct Conn final : Session, std::enable_shared_from_this<Conn> {
  explicit Conn(Server* s) : server(s) {}
  Server* server;
  int fd = -1;
  uint64_t key = 0;
  uid_t uid = 0;
  std::string in;  // I/O thread only

  std::mutex mu;  // guards everything below
  std::string out;
  std::deque<std::string> lines;  // requests waiting for their turn
  size_t lines_bytes = 0;         // their size together
  bool busy = false;              // a request of this connection is being served
  bool close_after_flush = false;
  bool dead = false;
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

  // Session
  void send(std::string message) override;
  void resume() override;
  bool gone() override;
  EventState event_state() override;
  bool send_events(const std::vector<std::string>& messages) override;
  std::string peer() const override { return "uid " + std::to_string(uid); }
};
using ConnPtr = std::shared_ptr<Conn>;

// A listing is written in pages of this many jobs, the next one only once the connection's
// output is below kListingLowWater: however long the queue, an answer in progress holds about
// one page per connection.
constexpr int64_t kListingPage = 500;
constexpr size_t kListingLowWater = 256 << 10;
// A connection with this many requests waiting is not read further until some are served.
constexpr size_t kMaxPendingLines = 64;
// Over the input budget, unfinished lines longer than this are refused, the longest first: a
// client that sent most of a long request and waits holds it, while a short request is read
// whole at once.
constexpr size_t kFairUnfinishedLine = 64 << 10;

class Server final : public ControlServer {
 public:
  Server(ServerOptions o, DownloadQueue* q, int listen_fd)
      : opts_(std::move(o)), q_(q), dispatcher_(q), listen_fd_(listen_fd) {
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
    dispatcher_.start();
  }

  void stop() override {
    {
      std::lock_guard lk(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    task_cv_.notify_all();
    wake_io();
    if (io_.joinable()) io_.join();
    for (auto& w : workers_) w.join();
    workers_.clear();
    dispatcher_.stop();
    for (auto& [k, c] : conns_) ::close(c->fd);
    conns_.clear();
    ::close(listen_fd_);
    ::unlink(opts_.socket_path.c_str());
  }

  void notify_change() override { dispatcher_.notify_change(); }

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
      auto c = std::make_shared<Conn>(this);
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
    return c.lines.size() < kMaxPendingLines && (c.lines.empty() || !over_input_budget()) &&
           (c.out.empty() || !over_budget());
  }
  bool over_budget() const { return queued_.load() > opts_.max_total_output_bytes; }
  bool over_input_budget() const { return held_in_.load() > opts_.max_total_input_bytes; }

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
        held_in_ += static_cast<size_t>(n);
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
        held_in_ -= from;  // now waiting lines (counted by enqueue_line), or blank
        if (c->in.size() > kMaxRequestBytes) {
          refuse_input(c, "request too large: the limit is " + std::to_string(kMaxRequestBytes) +
                              " bytes a line");
          return;
        }
        if (over_input_budget() && !evict_longest_unfinished(c)) return;
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
      if (!pending) {
        close_conn(c);
      } else {
        // Its request may wait in the dispatcher (a join) for a change that never comes: have
        // the waiter look again, see the session gone and hand the connection back.
        dispatcher_.notify_change();
      }
      return;
    }
  }

  // Refuses the request `c` is sending, before buffering more of it; the client cannot be read
  // any further, and the connection ends once the answer is written (I/O thread).
  void refuse_input(const ConnPtr& c, const std::string& why) {
    send(c, rpc_error(nullptr, kInvalidRequest, why), true);
    drop_input(*c);
    ::shutdown(c->fd, SHUT_RD);
  }

  // Over the input budget: the connections holding the longest unfinished lines (over
  // kFairUnfinishedLine) are refused until it is met again, so that clients that send most of a
  // long line and wait cannot keep it reached. False when `c` itself was refused (I/O thread).
  bool evict_longest_unfinished(const ConnPtr& c) {
    bool kept = true;
    while (over_input_budget()) {
      ConnPtr longest;
      for (auto& [k, o] : conns_) {
        if (o->in.size() > kFairUnfinishedLine && (!longest || o->in.size() > longest->in.size()))
          longest = o;
      }
      if (!longest) break;
      spdlog::warn(
          "control socket: over the input budget, refusing an unfinished request of {} bytes",
          longest->in.size());
      refuse_input(longest,
                   "the daemon holds too many unfinished requests; the longest, this one, is "
                   "refused: send it again");
      kept = kept && longest != c;
    }
    return kept;
  }

  // Lets go of what a connection read and was not served (I/O thread).
  void drop_input(Conn& c) {
    held_in_ -= c.in.size();
    c.in.clear();
  }

  void close_conn(const ConnPtr& c) {
    drop_input(*c);
    {
      std::lock_guard lk(c->mu);
      c->dead = true;
      held_in_ -= c->lines_bytes;
      c->lines.clear();
      c->lines_bytes = 0;
    }
    {
      std::lock_guard lk(c->mu);
      queued_ -= c->out.size();
      c->out.clear();
    }
    dispatcher_.cancel(c.get());
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
      c->lines_bytes += line.size();
      held_in_ += line.size();
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
        c->lines_bytes -= line.size();
        held_in_ -= line.size();
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
    if (!req) {
      send(c, err);
    } else if (req->method == "list_jobs") {
      // Written here a page at a time, as the connection's output drains, rather than by the
      // dispatcher's list_jobs, which builds the whole answer at once.
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
    } else if (dispatcher_.handle(*req, c) == Dispatcher::Outcome::kWaiting) {
      return;  // the dispatcher resumes this connection after answering
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
    if (!more) dispatcher_.notify_change();  // a subscriber on this connection waits for the line to end
    return more;
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

  friend struct Conn;  // its Session methods queue output here

  ServerOptions opts_;
  DownloadQueue* q_;
  Dispatcher dispatcher_;
  int listen_fd_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::map<uint64_t, ConnPtr> conns_;  // I/O thread only
  uint64_t next_key_ = 2;

  std::mutex mu_;
  std::condition_variable task_cv_;
  std::deque<ConnPtr> tasks_;
  bool stopped_ = false;
  std::atomic<size_t> queued_{0};   // bytes in every Conn::out
  std::atomic<size_t> held_in_{0};  // bytes in every Conn::in and Conn::lines
  size_t conn_count_ = 0;

  std::thread io_;
  std::vector<std::thread> workers_;
};

void Conn::send(std::string message) {
  // A big batch or listing leaves megabytes of freed JSON in malloc's arenas; hand them back
  // so the daemon's memory follows its running jobs, not its largest request.
  if (server->send(shared_from_this(), std::move(message)) > (1u << 20)) ::malloc_trim(0);
}

void Conn::resume() { server->resume(shared_from_this()); }

bool Conn::gone() {
  std::lock_guard lk(mu);
  return dead || close_after_flush;
}

Session::EventState Conn::event_state() {
  std::lock_guard lk(mu);
  if (dead) return EventState::kGone;
  if (listing) return EventState::kBusy;  // not inside its listing's line: resumed when it ends
  if (out.size() > server->opts_.max_output_bytes / 2) return EventState::kBehind;
  return EventState::kReady;
}

bool Conn::send_events(const std::vector<std::string>& messages) {
  std::string text;
  for (const auto& m : messages) {
    text += m;
    text += '\n';
  }
  {
    // Checked and queued at once: a listing may have opened its line since event_state(), and
    // an event must not land inside it (its end calls notify_change again).
    std::lock_guard lk(mu);
    if (listing || dead) return false;
    server->append_out(*this, text);
  }
  server->wake_io();
  return true;
}

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
