// Implementation of the misbehaving HTTP/1.1 test server and the hashing helpers for fetchq tests.
#include "test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "transfer/transfer.h"

namespace fetchq::testing {
namespace {

using Clock = std::chrono::steady_clock;
using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Request heads larger than this are rejected; real clients send < 1 KiB.
constexpr size_t kMaxRequestHead = 64 * 1024;
// Piece size for plain bodies; also the throttling granularity.
constexpr size_t kPieceSize = 16 * 1024;
// Varied chunk sizes so client decoders see 1-digit and multi-digit hex sizes.
constexpr std::array<size_t, 4> kChunkSizes = {1, 10, 1000, 16384};
// Bound on how long a graceful close waits for the client to read our FIN.
constexpr auto kLingerTime = std::chrono::seconds(1);

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Digits only (no sign, no spaces), with overflow detection.
std::optional<uint64_t> parse_u64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::string to_hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

// ---------------------------------------------------------------- SHA-256

class Sha256 {
 public:
  void update(const void* data, size_t len) {
    const auto* p = static_cast<const uint8_t*>(data);
    total_len_ += len;
    while (len > 0) {
      const size_t take = std::min(len, sizeof buf_ - buf_len_);
      std::memcpy(buf_ + buf_len_, p, take);
      buf_len_ += take;
      p += take;
      len -= take;
      if (buf_len_ == sizeof buf_) {
        compress(buf_);
        buf_len_ = 0;
      }
    }
  }

  // Finalises; the object must not be updated afterwards.
  std::string hex_digest() {
    const uint64_t bit_len = total_len_ * 8;
    const uint8_t pad_start = 0x80;
    const uint8_t zero = 0;
    update(&pad_start, 1);
    while (buf_len_ != 56) update(&zero, 1);
    uint8_t len_be[8];
    for (int i = 0; i < 8; ++i) len_be[i] = static_cast<uint8_t>(bit_len >> (56 - 8 * i));
    update(len_be, 8);
    static const char* const kDigits = "0123456789abcdef";
    std::string out;
    out.reserve(64);
    for (uint32_t word : h_) {
      for (int shift = 28; shift >= 0; shift -= 4) out += kDigits[(word >> shift) & 0xf];
    }
    return out;
  }

 private:
  static constexpr std::array<uint32_t, 64> kK = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

  void compress(const uint8_t* block) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = (uint32_t{block[4 * i]} << 24) | (uint32_t{block[4 * i + 1]} << 16) |
             (uint32_t{block[4 * i + 2]} << 8) | uint32_t{block[4 * i + 3]};
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = std::rotr(w[i - 15], 7) ^ std::rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = std::rotr(w[i - 2], 17) ^ std::rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
    uint32_t e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t s1 = std::rotr(e, 6) ^ std::rotr(e, 11) ^ std::rotr(e, 25);
      const uint32_t ch = (e & f) ^ (~e & g);
      const uint32_t t1 = h + s1 + ch + kK[i] + w[i];
      const uint32_t s0 = std::rotr(a, 2) ^ std::rotr(a, 13) ^ std::rotr(a, 22);
      const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
      const uint32_t t2 = s0 + maj;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t buf_[64] = {};
  size_t buf_len_ = 0;
  uint64_t total_len_ = 0;
};

// ---------------------------------------------------------------- HTTP bits

struct Request {
  std::string method, target, path, version;
  HeaderList headers;  // names lower-cased

  std::string header(std::string_view lower_name) const {
    for (const auto& [name, value] : headers) {
      if (name == lower_name) return value;
    }
    return "";
  }
  bool has_header(std::string_view lower_name) const {
    return std::any_of(headers.begin(), headers.end(),
                       [&](const auto& h) { return h.first == lower_name; });
  }
};

// Returns false for anything that is not a well-formed HTTP/1.x request head.
bool parse_request_head(std::string_view head, Request& req) {
  auto next_line = [&head]() {
    const size_t eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    head.remove_prefix(eol == std::string_view::npos ? head.size() : eol + 2);
    return line;
  };
  const std::string_view request_line = next_line();
  const size_t sp1 = request_line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  req.method = std::string(request_line.substr(0, sp1));
  req.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
  req.version = std::string(request_line.substr(sp2 + 1));
  if (req.method.empty() || req.target.empty() || req.version.rfind("HTTP/1.", 0) != 0) return false;

  std::string_view path = req.target;
  // Absolute-form targets (proxy style) still map onto our paths.
  if (path.rfind("http://", 0) == 0) {
    const size_t slash = path.find('/', 7);
    path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
  }
  req.path = std::string(path.substr(0, path.find('?')));

  while (!head.empty()) {
    const std::string_view line = next_line();
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return false;
    const std::string_view name = line.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return false;  // also rejects obs-fold
    req.headers.emplace_back(to_lower(name), std::string(trim(line.substr(colon + 1))));
  }
  return true;
}

struct RangeSpec {
  enum class Kind { kIgnore, kUnsatisfiable, kOk } kind = Kind::kIgnore;
  uint64_t first = 0, last = 0;  // inclusive, clamped to the body
};

// Single ranges only: multi-range requests are ignored (served 200), which
// RFC 9110 permits and keeps the server free of multipart/byteranges.
RangeSpec parse_range(std::string_view value, uint64_t size) {
  RangeSpec out;
  value = trim(value);
  if (value.size() < 6 || !iequals(value.substr(0, 6), "bytes=")) return out;
  value = trim(value.substr(6));
  if (value.find(',') != std::string_view::npos) return out;
  const size_t dash = value.find('-');
  if (dash == std::string_view::npos) return out;
  const std::string_view a = trim(value.substr(0, dash));
  const std::string_view b = trim(value.substr(dash + 1));
  if (a.empty()) {  // suffix range: last N bytes
    const auto n = parse_u64(b);
    if (!n) return out;
    if (*n == 0 || size == 0) {
      out.kind = RangeSpec::Kind::kUnsatisfiable;
      return out;
    }
    out.kind = RangeSpec::Kind::kOk;
    out.first = size - std::min(*n, size);
    out.last = size - 1;
    return out;
  }
  const auto first = parse_u64(a);
  if (!first) return out;
  uint64_t last = UINT64_MAX;
  if (!b.empty()) {
    const auto parsed = parse_u64(b);
    if (!parsed || *parsed < *first) return out;
    last = *parsed;
  }
  if (*first >= size) {
    out.kind = RangeSpec::Kind::kUnsatisfiable;
    return out;
  }
  out.kind = RangeSpec::Kind::kOk;
  out.first = *first;
  out.last = std::min(last, size - 1);
  return out;
}

std::string status_line(int status) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(transfer::reason_phrase(status)) + "\r\n";
}

void add_header(std::string& head, std::string_view name, std::string_view value) {
  head.append(name).append(": ").append(value).append("\r\n");
}

// Loops over partial sends; MSG_NOSIGNAL so a vanished client is an error
// return rather than SIGPIPE killing the test binary. Returns bytes sent.
size_t send_all(int fd, std::string_view data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    sent += static_cast<size_t>(n);
  }
  return sent;
}

}  // namespace

// ---------------------------------------------------------------- server

struct TestServer::Impl {
  struct Entry {
    std::shared_ptr<const Resource> resource;
    std::string base_etag;        // "auto" resolved once, not per request
    std::atomic<int> requests{0};  // drives etag_changes
    std::atomic<int> drops{0};     // drives drop_times
    std::atomic<int> in_flight{0};  // GETs being answered, for max_in_flight
  };

  // How a connection ends after a response.
  enum class After { kKeepAlive, kClose, kAbort };
  enum class BodyEnd { kComplete, kCut, kFailed };

  Impl();
  ~Impl();

  void accept_loop();
  void serve_connection(int fd, uint64_t id);
  bool read_request(int fd, std::string& inbuf, Request& req, int& error_status);
  After handle(int fd, uint64_t connection, const Request& req);
  After serve_resource(int fd, const Request& req, bool client_close, Entry& entry, RequestLog& log);
  BodyEnd send_body(int fd, std::string_view body, bool chunked, uint64_t limit, uint64_t rate,
                    uint64_t burst, int status, RequestLog& log, uint64_t& sent_out);
  void account(RequestLog& log, uint64_t planned, uint64_t actual, int status = 0);
  void hold_until_stop_or_close(int fd);
  void linger_close(int fd);
  bool sleep_until(Clock::time_point deadline);
  void finish(RequestLog& log, int status, uint64_t body_bytes);
  void reap_finished_threads();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Written under mu_ (so cv_ waiters cannot miss it), read lock-free.
  std::atomic<bool> stopping_{false};
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread accept_thread_;

  std::unordered_map<std::string, std::shared_ptr<Entry>> resources_;
  // Shared, so that taking one for a request copies no state it captured (a handler may hold
  // whole bodies, and a copy of those under mu_ stalls every connection in a sanitizer build).
  std::unordered_map<std::string, std::shared_ptr<const RawHandler>> handlers_;
  // shared_ptr so reset_log() cannot invalidate an entry a handler still fills.
  std::vector<std::shared_ptr<RequestLog>> log_;
  uint64_t total_body_bytes_ = 0;  // guarded by mu_
  int bodies_now_ = 0;             // guarded by mu_: bodies being sent at this moment
  int peak_bodies_ = 0;            // guarded by mu_: the most at once since reset_log
  // set_link_rate: every body shares this many bytes per second (0: no shared limit); each
  // piece books its time on the link from link_free_ on.
  uint64_t link_rate_ = 0;            // guarded by mu_
  Clock::time_point link_free_{};     // guarded by mu_

  // Open connection sockets, so stop can shutdown() them to wake blocked I/O.
  std::set<int> open_fds_;
  std::map<uint64_t, std::thread> conns_;
  std::vector<uint64_t> finished_;  // ids whose threads are exiting; joined lazily
  uint64_t next_conn_id_ = 0;
};

TestServer::Impl::Impl() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 128) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    throw std::system_error(err, std::generic_category(), "bind/listen 127.0.0.1:0");
  }
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { accept_loop(); });
}

TestServer::Impl::~Impl() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // On Linux shutdown() of a listening socket makes a blocked accept() return.
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  ::close(listen_fd_);

  std::map<uint64_t, std::thread> conns;
  {
    std::lock_guard lock(mu_);
    // Wakes threads blocked in recv()/send()/poll(); fds are closed by their
    // owning threads under mu_, so none of these can be a reused number.
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    conns = std::move(conns_);
  }
  for (auto& [id, thread] : conns) thread.join();
}

void TestServer::Impl::reap_finished_threads() {
  std::vector<std::thread> done;
  {
    std::lock_guard lock(mu_);
    for (uint64_t id : finished_) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      done.push_back(std::move(it->second));
      conns_.erase(it);
    }
    finished_.clear();
  }
  for (auto& t : done) t.join();  // they are past their last lock; joins are immediate
}

void TestServer::Impl::accept_loop() {
  while (!stopping_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) break;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        sleep_until(Clock::now() + std::chrono::milliseconds(10));
        continue;
      }
      break;
    }
    // Small header writes must reach the client immediately; stall and drop
    // tests look at exactly what arrived.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    reap_finished_threads();
    std::lock_guard lock(mu_);
    if (stopping_) {
      ::close(fd);
      break;
    }
    open_fds_.insert(fd);
    const uint64_t id = next_conn_id_++;
    conns_.emplace(id, std::thread([this, fd, id] { serve_connection(fd, id); }));
  }
}

void TestServer::Impl::serve_connection(int fd, uint64_t id) {
  std::string inbuf;
  After after = After::kAbort;
  while (!stopping_) {
    Request req;
    int error_status = 0;
    if (!read_request(fd, inbuf, req, error_status)) {
      if (error_status != 0) {
        std::string head = status_line(error_status);
        add_header(head, "Content-Length", "0");
        add_header(head, "Connection", "close");
        head += "\r\n";
        send_all(fd, head);
        after = After::kClose;
      } else {
        after = After::kAbort;  // peer closed or stop: nothing left to say
      }
      break;
    }
    after = handle(fd, id, req);
    if (after != After::kKeepAlive) break;
  }
  if (after == After::kClose && !stopping_) {
    linger_close(fd);
  } else {
    ::shutdown(fd, SHUT_RDWR);
  }
  std::lock_guard lock(mu_);
  open_fds_.erase(fd);
  ::close(fd);
  finished_.push_back(id);
}

// Reads one request head (plus any request body, which is discarded) from
// fd, keeping pipelined bytes in inbuf. False on EOF/stop, or with
// error_status set for a malformed request.
bool TestServer::Impl::read_request(int fd, std::string& inbuf, Request& req, int& error_status) {
  char buf[16 * 1024];
  size_t end;
  for (;;) {
    // Tolerate blank lines before a request line (RFC 9112 section 2.2).
    while (inbuf.rfind("\r\n", 0) == 0) inbuf.erase(0, 2);
    end = inbuf.find("\r\n\r\n");
    if (end != std::string::npos) break;
    if (inbuf.size() > kMaxRequestHead) {
      error_status = 431;
      return false;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || stopping_) return false;
    inbuf.append(buf, static_cast<size_t>(n));
  }
  const bool ok = parse_request_head(std::string_view(inbuf).substr(0, end + 2), req);
  inbuf.erase(0, end + 4);
  if (!ok || req.has_header("transfer-encoding")) {
    // Chunked request bodies are never sent by a download client; refusing
    // them keeps framing simple.
    error_status = 400;
    return false;
  }
  if (req.has_header("content-length")) {
    const auto body_len = parse_u64(req.header("content-length"));
    if (!body_len) {
      error_status = 400;
      return false;
    }
    uint64_t remaining = *body_len;
    const size_t from_buf = static_cast<size_t>(std::min<uint64_t>(remaining, inbuf.size()));
    inbuf.erase(0, from_buf);
    remaining -= from_buf;
    while (remaining > 0) {
      const ssize_t n = ::recv(fd, buf, static_cast<size_t>(std::min<uint64_t>(remaining, sizeof buf)), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || stopping_) return false;
      remaining -= static_cast<uint64_t>(n);
    }
  }
  return true;
}

TestServer::Impl::After TestServer::Impl::handle(int fd, uint64_t connection_id,
                                                 const Request& req) {
  auto log = std::make_shared<RequestLog>();
  log->connection = connection_id;
  log->method = req.method;
  log->path = req.path;
  log->target = req.target;
  log->range = req.header("range");
  log->if_range = req.header("if-range");
  log->authorization = req.header("authorization");
  log->user_agent = req.header("user-agent");
  log->accept_encoding = req.header("accept-encoding");
  log->host = req.header("host");
  log->headers.assign(req.headers.begin(), req.headers.end());

  std::shared_ptr<const RawHandler> raw;
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard lock(mu_);
    log_.push_back(log);
    if (auto it = handlers_.find(req.path); it != handlers_.end()) raw = it->second;
    if (auto it = resources_.find(req.path); it != resources_.end()) entry = it->second;
  }
  if (raw) {
    (*raw)(*log, fd);
    return After::kClose;
  }

  // Tokens of Connection are case-insensitive; a substring check is enough
  // for the clients under test.
  const std::string connection = to_lower(req.header("connection"));
  const bool client_close = connection.find("close") != std::string::npos ||
                            (req.version == "HTTP/1.0" && connection.find("keep-alive") == std::string::npos);

  const bool is_head = req.method == "HEAD";
  if (req.method != "GET" && !is_head) {
    std::string head = status_line(405);
    add_header(head, "Allow", "GET, HEAD");
    add_header(head, "Content-Length", "0");
    if (client_close) add_header(head, "Connection", "close");
    head += "\r\n";
    finish(*log, 405, 0);
    const bool ok = send_all(fd, head) == head.size();
    return ok && !client_close ? After::kKeepAlive : After::kClose;
  }
  if (!entry) {
    static constexpr std::string_view kNotFound = "not found\n";
    std::string head = status_line(404);
    add_header(head, "Content-Length", std::to_string(kNotFound.size()));
    if (client_close) add_header(head, "Connection", "close");
    head += "\r\n";
    if (!is_head) head += kNotFound;
    finish(*log, 404, 0);
    const bool ok = send_all(fd, head) == head.size();
    return ok && !client_close ? After::kKeepAlive : After::kClose;
  }
  return serve_resource(fd, req, client_close, *entry, *log);
}

TestServer::Impl::After TestServer::Impl::serve_resource(int fd, const Request& req, bool client_close,
                                                         Entry& entry, RequestLog& log) {
  const Resource& r = *entry.resource;
  const int index = entry.requests.fetch_add(1);
  const bool is_head = req.method == "HEAD";

  std::string etag = entry.base_etag;
  if (r.etag_changes && !etag.empty()) {
    const std::string suffix = "-" + std::to_string(index);
    if (etag.size() >= 2 && etag.back() == '"') {
      etag.insert(etag.size() - 1, suffix);
    } else {
      etag += suffix;
    }
  }

  auto add_extras = [&r](std::string& head) {
    for (const auto& [name, value] : r.extra_headers) add_header(head, name, value);
  };
  auto simple = [&](int status, std::string head, std::string_view body) {
    add_header(head, "Content-Length", std::to_string(body.size()));
    add_extras(head);
    if (client_close) add_header(head, "Connection", "close");
    head += "\r\n";
    if (!is_head) head += body;
    finish(log, status, 0);
    const bool ok = send_all(fd, head) == head.size();
    return ok && !client_close ? After::kKeepAlive : After::kClose;
  };

  if (!r.redirect_to.empty()) {
    const int status = (r.status >= 300 && r.status < 400) ? r.status : 302;
    std::string head = status_line(status);
    add_header(head, "Location", r.redirect_to);
    return simple(status, std::move(head), "");
  }
  if (r.status != 200) {
    std::string head = status_line(r.status);
    if (!r.retry_after.empty()) add_header(head, "Retry-After", r.retry_after);
    return simple(r.status, std::move(head), "error\n");
  }
  // A server that takes only so many connections at once refuses the next one with 503.
  struct InFlight {
    std::atomic<int>* n = nullptr;
    ~InFlight() {
      if (n) n->fetch_sub(1);
    }
  } in_flight;
  if (r.max_in_flight > 0 && !is_head) {
    in_flight.n = &entry.in_flight;
    if (entry.in_flight.fetch_add(1) >= r.max_in_flight) {
      std::string head = status_line(503);
      if (!r.retry_after.empty()) add_header(head, "Retry-After", r.retry_after);
      return simple(503, std::move(head), "too many connections\n");
    }
  }

  const std::string_view whole = r.body;
  const uint64_t size = whole.size();
  uint64_t offset = 0;
  uint64_t length = size;
  int status = 200;
  std::string content_range;

  // RFC 9110: Range is only meaningful for GET; HEAD describes the 200.
  const std::string range = req.header("range");
  if (r.honour_range && !range.empty() && !is_head) {
    const std::string if_range = req.header("if-range");
    bool if_range_ok = true;
    if (!if_range.empty() && r.honour_if_range) {
      const bool looks_like_etag = if_range.front() == '"' || if_range.rfind("W/", 0) == 0;
      // Weak validators never match If-Range (strong comparison required).
      if_range_ok = looks_like_etag ? (!etag.empty() && if_range == etag && etag.rfind("W/", 0) != 0)
                                    : (!r.last_modified.empty() && if_range == r.last_modified);
    }
    const RangeSpec spec = if_range_ok ? parse_range(range, size) : RangeSpec{};
    if (spec.kind == RangeSpec::Kind::kUnsatisfiable) {
      std::string head = status_line(416);
      if (r.on416 != Resource::On416::kWithoutContentRange) {
        add_header(head, "Content-Range", "bytes */" + std::to_string(size));
      }
      add_header(head, "Accept-Ranges", "bytes");
      return simple(416, std::move(head), "");
    }
    if (spec.kind == RangeSpec::Kind::kOk) {
      status = 206;
      uint64_t first = spec.first;
      const uint64_t last = spec.last;
      if (r.wrong_range_start >= 0) first = std::min<uint64_t>(static_cast<uint64_t>(r.wrong_range_start), size - 1);
      // With a wrong start past the requested end, still send through `last`
      // only if that is a valid interval; otherwise to the end of the body.
      const uint64_t send_last = last >= first ? last : size - 1;
      offset = first;
      length = send_last - first + 1;
      content_range = "bytes " + std::to_string(first) + "-" + std::to_string(send_last) + "/" +
                      std::to_string(size);
    }
  }

  const bool chunked = r.chunked;
  const bool no_length = r.no_length && !chunked;
  const bool lie = r.lie_length >= 0 && !chunked && !no_length;
  const bool must_close = client_close || no_length || lie;

  std::string head = status_line(status);
  if (chunked) {
    add_header(head, "Transfer-Encoding", "chunked");
  } else if (lie) {
    add_header(head, "Content-Length", std::to_string(r.lie_length));
  } else if (!no_length) {
    add_header(head, "Content-Length", std::to_string(length));
  }
  if (!content_range.empty()) add_header(head, "Content-Range", content_range);
  if (r.honour_range) add_header(head, "Accept-Ranges", "bytes");
  if (!etag.empty()) add_header(head, "ETag", etag);
  if (!r.last_modified.empty()) add_header(head, "Last-Modified", r.last_modified);
  if (!r.content_disposition.empty()) add_header(head, "Content-Disposition", r.content_disposition);
  if (!r.content_encoding.empty()) add_header(head, "Content-Encoding", r.content_encoding);
  if (!r.retry_after.empty()) add_header(head, "Retry-After", r.retry_after);
  add_extras(head);
  if (must_close) add_header(head, "Connection", "close");
  head += "\r\n";

  // With no body to follow, the head is the last thing the client sees, so
  // the log must be final before it goes out.
  if (is_head || (length == 0 && !chunked)) finish(log, status, 0);
  if (send_all(fd, head) != head.size()) {
    finish(log, status, 0);
    return After::kAbort;
  }
  if (is_head) return must_close ? After::kClose : After::kKeepAlive;

  // Decide where (if anywhere) this body gets cut short.
  enum class Cut { kNone, kDrop, kStall } cut = Cut::kNone;
  uint64_t limit = length;
  if (r.drop_after >= 0 && static_cast<uint64_t>(r.drop_after) < length &&
      entry.drops.fetch_add(1) < r.drop_times) {
    cut = Cut::kDrop;
    limit = static_cast<uint64_t>(r.drop_after);
  } else if (r.stall_after >= 0 && static_cast<uint64_t>(r.stall_after) < length) {
    cut = Cut::kStall;
    limit = static_cast<uint64_t>(r.stall_after);
  }

  uint64_t sent = 0;
  const BodyEnd end =
      send_body(fd, whole.substr(offset, length), chunked, limit,
                status == 206 && r.range_rate ? r.range_rate(offset) : r.rate_bytes_per_s,
                r.rate_burst, status, log, sent);
  if (end == BodyEnd::kCut && cut == Cut::kStall) hold_until_stop_or_close(fd);
  finish(log, status, sent);
  if (end != BodyEnd::kComplete) return After::kAbort;
  return must_close ? After::kClose : After::kKeepAlive;
}

// Sends body[0, limit) (with chunk framing if asked), throttled to `rate`
// bytes/s when non-zero, in bursts of `burst` bytes when that is non-zero too.
// kCut means limit < body.size() was reached.
//
// Counters are bumped before each send and corrected afterwards, and the
// status is logged before the bytes that complete the response: a test that
// has just read the last byte must already see the final log entry.
TestServer::Impl::BodyEnd TestServer::Impl::send_body(int fd, std::string_view body, bool chunked,
                                                      uint64_t limit, uint64_t rate, uint64_t burst,
                                                      int status, RequestLog& log,
                                                      uint64_t& sent_out) {
  {
    std::lock_guard lock(mu_);
    peak_bodies_ = std::max(peak_bodies_, ++bodies_now_);
  }
  struct Leave {
    Impl* impl;
    ~Leave() {
      std::lock_guard lock(impl->mu_);
      --impl->bodies_now_;
    }
  } leave{this};
  const auto start = Clock::now();
  const bool completes = limit == body.size();
  uint64_t sent = 0;
  size_t chunk_no = 0;
  std::string frame;
  while (sent < limit) {
    if (stopping_) return BodyEnd::kFailed;
    size_t piece = chunked ? kChunkSizes[chunk_no++ % kChunkSizes.size()] : kPieceSize;
    // Small pieces at low rates keep each sleep short, so a client that went
    // away is noticed (by a failing send) within a fraction of a second; in
    // bursts, only after the pause that follows one.
    if (rate > 0 && burst == 0)
      piece = static_cast<size_t>(std::min<uint64_t>(piece, std::max<uint64_t>(1, rate / 10)));
    // A burst ends on a piece's end: the pause comes after it.
    if (rate > 0 && burst > 0)
      piece = static_cast<size_t>(std::min<uint64_t>(piece, burst - sent % burst));
    uint64_t link_rate = 0;
    {
      std::lock_guard lock(mu_);
      link_rate = link_rate_;
    }
    if (link_rate > 0) piece = static_cast<size_t>(std::min<uint64_t>(piece, std::max<uint64_t>(1, link_rate / 400)));
    piece = static_cast<size_t>(std::min<uint64_t>(piece, body.size() - sent));
    const size_t data_len = static_cast<size_t>(std::min<uint64_t>(piece, limit - sent));
    const std::string_view data = body.substr(sent, data_len);
    if (link_rate > 0) {
      // The piece waits for its turn on the shared link, booked after every piece before it,
      // so no number of connections gets more than the link's rate.
      Clock::time_point turn;
      {
        std::lock_guard lock(mu_);
        turn = std::max(link_free_, Clock::now());
        link_free_ = turn + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                static_cast<double>(data_len) / static_cast<double>(link_rate)));
      }
      if (!sleep_until(turn)) return BodyEnd::kFailed;
    }
    const int status_now = completes && !chunked && sent + data_len == limit ? status : 0;

    size_t body_bytes = 0;
    bool ok = false;
    if (chunked) {
      // A cut inside a chunk leaves its declared size unfulfilled, as a real
      // dropped connection would.
      frame = to_hex(piece) + "\r\n";
      const size_t header_len = frame.size();
      frame.append(data);
      if (data_len == piece) frame += "\r\n";
      account(log, 0, data_len, status_now);
      const size_t n = send_all(fd, frame);
      body_bytes = n > header_len ? std::min(n - header_len, data_len) : 0;
      ok = n == frame.size();
    } else {
      account(log, 0, data_len, status_now);
      body_bytes = send_all(fd, data);
      ok = body_bytes == data_len;
    }
    account(log, data_len, body_bytes);
    sent += body_bytes;
    sent_out = sent;
    if (!ok) return BodyEnd::kFailed;
    if (rate > 0 && sent < limit && (burst == 0 || sent % burst == 0)) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(static_cast<double>(sent) / static_cast<double>(rate)));
      if (!sleep_until(due)) return BodyEnd::kFailed;
    }
  }
  if (!completes) return BodyEnd::kCut;
  if (chunked) {
    account(log, 0, 0, status);
    if (send_all(fd, "0\r\n\r\n") != 5) return BodyEnd::kFailed;
  }
  return BodyEnd::kComplete;
}

// Moves `planned` bytes of optimistic accounting to `actual` (saturating, in
// case reset_log() ran in between); a non-zero status is logged as well.
void TestServer::Impl::account(RequestLog& log, uint64_t planned, uint64_t actual, int status) {
  std::lock_guard lock(mu_);
  if (status != 0) log.status = status;
  auto adjust = [&](uint64_t& v) { v = v >= planned ? v - planned + actual : actual; };
  adjust(log.body_bytes_sent);
  adjust(total_body_bytes_);
}

// Keeps a stalled connection open, discarding anything the client sends,
// until the client closes or the server stops (whose shutdown() wakes poll).
void TestServer::Impl::hold_until_stop_or_close(int fd) {
  char buf[4096];
  while (!stopping_) {
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, 100);
    if (rc < 0 && errno != EINTR) return;
    if (rc <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
  }
}

// Half-close, then wait briefly for the client's EOF: closing with unread
// input would send RST, which can destroy response bytes still in flight to a
// close-delimited client.
void TestServer::Impl::linger_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto deadline = Clock::now() + kLingerTime;
  char buf[4096];
  while (!stopping_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return;
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 100)));
    if (rc < 0 && errno != EINTR) return;
    if (rc <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
  }
}

// Returns false if the server is stopping (immediately, not at the deadline).
bool TestServer::Impl::sleep_until(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return !cv_.wait_until(lock, deadline, [this] { return stopping_.load(); });
}

void TestServer::Impl::finish(RequestLog& log, int status, uint64_t body_bytes) {
  std::lock_guard lock(mu_);
  log.status = status;
  log.body_bytes_sent = body_bytes;
}

// ---------------------------------------------------------------- public API

TestServer::TestServer() : impl_(std::make_unique<Impl>()) {}
TestServer::~TestServer() = default;

uint16_t TestServer::port() const { return impl_->port_; }

std::string TestServer::url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(impl_->port_) + std::string(path);
}

void TestServer::add(std::string path, Resource r) {
  add(std::move(path), std::make_shared<const Resource>(std::move(r)));
}

void TestServer::add(std::string path, std::shared_ptr<const Resource> r) {
  auto entry = std::make_shared<Impl::Entry>();
  if (r->etag == "auto") {
    entry->base_etag = "\"" + to_hex(std::hash<std::string>{}(r->body)) + "\"";
  } else {
    entry->base_etag = r->etag;
  }
  entry->resource = std::move(r);
  std::lock_guard lock(impl_->mu_);
  impl_->resources_[std::move(path)] = std::move(entry);
}

void TestServer::set_handler(std::string path, RawHandler raw) {
  auto shared = std::make_shared<const RawHandler>(std::move(raw));
  std::lock_guard lock(impl_->mu_);
  impl_->handlers_[std::move(path)] = std::move(shared);
}

std::vector<RequestLog> TestServer::requests() const {
  std::lock_guard lock(impl_->mu_);
  std::vector<RequestLog> out;
  out.reserve(impl_->log_.size());
  for (const auto& entry : impl_->log_) out.push_back(*entry);
  return out;
}

std::vector<RequestLog> TestServer::requests_for(std::string_view path) const {
  std::lock_guard lock(impl_->mu_);
  std::vector<RequestLog> out;
  for (const auto& entry : impl_->log_) {
    if (entry->path == path) out.push_back(*entry);
  }
  return out;
}

uint64_t TestServer::total_body_bytes_sent() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->total_body_bytes_;
}

void TestServer::reset_log() {
  std::lock_guard lock(impl_->mu_);
  impl_->log_.clear();
  impl_->total_body_bytes_ = 0;
  impl_->peak_bodies_ = impl_->bodies_now_;
}

void TestServer::set_link_rate(uint64_t bytes_per_s) {
  std::lock_guard lock(impl_->mu_);
  impl_->link_rate_ = bytes_per_s;
}

int TestServer::peak_concurrent_bodies() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->peak_bodies_;
}

int TestServer::concurrent_bodies() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->bodies_now_;
}

// ---------------------------------------------------------------- helpers

std::string header_of(const RequestLog& req, std::string_view lower_name) {
  for (const auto& [name, value] : req.headers) {
    if (name == lower_name) return value;
  }
  return "";
}

std::string make_body(size_t n, uint32_t seed) {
  // splitmix64: fast, deterministic and well mixed, so bodies of different
  // seeds never share long runs that could hide an offset bug.
  uint64_t state = 0x9E3779B97F4A7C15ull * (uint64_t{seed} + 1);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (size_t j = 0; j < 8 && i + j < n; ++j) out[i + j] = static_cast<char>(z >> (8 * j));
  }
  return out;
}

std::string sha256_hex_of(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex_digest();
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  Sha256 h;
  std::vector<char> buf(64 * 1024);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return "";
  return h.hex_digest();
}

}  // namespace fetchq::testing
