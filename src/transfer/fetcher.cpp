// Fetcher: libcurl's multi interface on one thread; requests, responses and errors of HTTP.
#include "transfer/fetcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "fetchq/version.h"
#include "queue/request_check.h"
#include "util/strings.h"
#include "util/thread_name.h"

namespace fetchq::transfer {
namespace {

using util::lower;

// Failure classes of libcurl's result codes: (error_type, retryable).
std::pair<std::string, bool> classify(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return {"DNSError", true};
    case CURLE_COULDNT_CONNECT:
      return {"ConnectionError", true};
    case CURLE_OPERATION_TIMEDOUT:
      return {"Timeout", true};
    case CURLE_PARTIAL_FILE:
      return {"IncompleteBody", true};
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return {"ConnectionError", true};
    case CURLE_TOO_MANY_REDIRECTS:
      return {"TooManyRedirects", false};
    case CURLE_UNSUPPORTED_PROTOCOL:
      return {"UnsupportedProtocol", false};
    case CURLE_URL_MALFORMAT:
      return {"InvalidURL", false};
    case CURLE_SSL_CONNECT_ERROR:
      return {"TLSError", true};
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
      return {"TLSError", false};
    case CURLE_BAD_CONTENT_ENCODING:
      return {"ContentEncodingError", false};
    case CURLE_WRITE_ERROR:
      return {"DiskError", false};
    // While headers are read, libcurl's only allocation that fails in practice is a header line
    // over its 100 KB limit; end_done names that case.
    case CURLE_OUT_OF_MEMORY:
      return {"OutOfMemory", false};
    default:
      return {"TransferError", true};
  }
}

bool v4_private(uint32_t a) {  // host byte order
  auto in = [a](uint32_t net, int bits) { return (a >> (32 - bits)) == (net >> (32 - bits)); };
  return in(0x00000000, 8) || in(0x0A000000, 8) || in(0x64400000, 10) || in(0x7F000000, 8) ||
         in(0xA9FE0000, 16) || in(0xAC100000, 12) || in(0xC0000000, 24) || in(0xC0A80000, 16) ||
         in(0xC6120000, 15) || in(0xE0000000, 4) || in(0xF0000000, 4);
}

}  // namespace

bool is_private_address(const struct sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    return v4_private(ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr));
  }
  if (addr->sa_family != AF_INET6) return true;
  const auto* b = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr;
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b, mapped, 12) == 0 || std::memcmp(b, nat64, 12) == 0) {
    uint32_t v4 =
        (uint32_t{b[12]} << 24) | (uint32_t{b[13]} << 16) | (uint32_t{b[14]} << 8) | b[15];
    return v4_private(v4);
  }
  static const uint8_t zero[16] = {};
  if (std::memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1)) return true;  // :: and ::1
  if ((b[0] & 0xfe) == 0xfc) return true;                                        // fc00::/7
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;                        // fe80::/10
  if (b[0] == 0xff) return true;                                                 // multicast
  return false;
}

namespace {

// Largest response header block accepted (libcurl's own limit is 300 KB).
constexpr size_t kMaxHeaderBytes = 256 << 10;

// What a rate-limit bucket may save up while its fetches are idle or paused: a tenth of a
// second of its rate, at least 1 KiB. More would let a burst through above the limit.
constexpr double kBurstSeconds = 0.1;
constexpr double kMinBurst = 1 << 10;

}  // namespace

struct Fetcher::Fetch {
  Fetcher* fetcher = nullptr;
  FetchId id = 0;
  FetchRequest req;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  char curl_error[CURL_ERROR_SIZE] = {};
  std::map<std::string, std::string> resp_headers;  // of the last response, lower-case names
  size_t header_bytes = 0;                          // of the last response, status line included
  bool https_only = false;                          // redirects may not leave https (a token)
  bool responded = false;                           // on_response was called
  bool paused = false;                              // out of tokens: receiving is paused
  std::optional<Failure> failure;                   // the fetch's own, from a callback
};

Fetcher::Fetcher(FetcherOptions options, FetchClient* client) : options_(options), client_(client) {
  // Once per process, before any other libcurl call: libcurl's own lazy init in
  // curl_easy_init is not thread-safe, and a queue may be opened from any thread.
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  multi_ = curl_multi_init();
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 64L);
}

Fetcher::~Fetcher() {
  join();
  for (auto& [id, f] : fetches_) {
    curl_multi_remove_handle(multi_, f->easy);
    curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->headers);
  }
  fetches_.clear();
  curl_multi_cleanup(multi_);
}

void Fetcher::start_thread() {
  thread_ = std::thread([this] {
    util::name_this_thread("fetchq-transfer");
    run();
  });
}

void Fetcher::wakeup() { curl_multi_wakeup(multi_); }

void Fetcher::join() {
  if (thread_.joinable()) thread_.join();
}

void Fetcher::run() {
  for (;;) {
    if (!client_->on_wake()) return;
    const int resume_in = resume_paused();
    int running = 0;
    curl_multi_perform(multi_, &running);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Fetch* f = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &f);
      if (f) done(f->id, msg->data.result);
    }
    client_->on_tick();
    int timeout_ms = fetches_.empty() ? 1000 : 100;
    if (resume_in >= 0) timeout_ms = std::min(timeout_ms, resume_in);
    curl_multi_poll(multi_, nullptr, 0, timeout_ms, nullptr);
  }
}

curl_socket_t Fetcher::open_socket_cb(void* ud, curlsocktype, curl_sockaddr* a) noexcept {
  auto* f = static_cast<Fetch*>(ud);
  if (is_private_address(&a->addr)) {
    char host[INET6_ADDRSTRLEN] = "?";
    const void* raw =
        a->family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&a->addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&a->addr)->sin6_addr);
    ::inet_ntop(a->family, raw, host, sizeof host);
    if (!f->failure) {
      f->failure = Failure{.type = "AddressBlocked",
                           .message = "GET " + f->req.url + ": refused to connect to " + host +
                                      " (a private, loopback or link-local address)"};
    }
    return CURL_SOCKET_BAD;
  }
  return ::socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

size_t Fetcher::header_cb(char* data, size_t size, size_t n, void* ud) noexcept {
  auto* f = static_cast<Fetch*>(ud);
  size_t len = size * n;
  std::string_view line(data, len);
  if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
    // A new response (after a redirect or a 100). What a redirecting server said of the file it
    // sends to (Hugging Face's X-Linked-Etag and X-Linked-Size) stays unless the next one says
    // otherwise.
    std::map<std::string, std::string> linked;
    for (const char* name : {"x-linked-etag", "x-linked-size"}) {
      if (auto it = f->resp_headers.find(name); it != f->resp_headers.end()) linked.insert(*it);
    }
    f->resp_headers = std::move(linked);
    f->header_bytes = 0;
  }
  // Our own limit, below libcurl's 300 KB, so that a huge header block is named as such (and
  // not retried) instead of surfacing as a receive error.
  f->header_bytes += len;
  if (f->header_bytes > kMaxHeaderBytes) {
    if (!f->failure) {
      f->failure =
          Failure{.type = "HeaderTooLarge",
                  .message = f->fetcher->where(f->id) + ": the response headers are over " +
                             std::to_string(kMaxHeaderBytes / 1024) + " KiB; refused"};
    }
    return 0;  // aborts the transfer
  }
  if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") return len;
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name = lower(std::string(line.substr(0, colon)));
    std::string value(util::trim(line.substr(colon + 1)));
    if (name == "content-length") {
      auto it = f->resp_headers.find(name);
      const std::string* before = it == f->resp_headers.end() ? nullptr : &it->second;
      if (!content_length_agrees(value, before)) {
        if (!f->failure) {
          const std::string said = (before ? *before + " and " : "") + value;
          f->failure = Failure{.type = "BadResponseHeader",
                               .message = f->fetcher->where(f->id) +
                                          ": the response's Content-Length is not one "
                                          "length (" +
                                          said.substr(0, 80) + ")",
                               .retryable = true};
        }
        return 0;  // aborts the transfer: the body's end could not be told
      }
    }
    f->resp_headers[std::move(name)] = std::move(value);
  }
  return len;
}

size_t Fetcher::write_cb(char* data, size_t size, size_t n, void* ud) noexcept {
  auto* f = static_cast<Fetch*>(ud);
  FetchClient* client = f->fetcher->client_;
  const FetchId id = f->id;
  size_t len = size * n;
  if (!f->responded) {
    f->responded = true;
    long code = 0;
    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_off_t clen = -1;
    curl_easy_getinfo(f->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
    FetchResponse r{
        .code = code, .content_length = static_cast<int64_t>(clen), .headers = &f->resp_headers};
    if (!client->on_response(id, r)) return CURL_WRITEFUNC_ERROR;
  }
  // Out of tokens: libcurl keeps the bytes and hands them over again once resume_paused()
  // lets the fetch go on; meanwhile it reads nothing more from this connection.
  if (!f->fetcher->may_receive(*f, std::chrono::steady_clock::now())) {
    f->paused = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  f->fetcher->take(*f, len);
  if (!client->on_data(id, data, len)) return CURL_WRITEFUNC_ERROR;
  return len;
}

void Fetcher::Bucket::refill(std::chrono::steady_clock::time_point now) {
  if (rate <= 0) return;
  const double burst = std::max(kMinBurst, static_cast<double>(rate) * kBurstSeconds);
  const double dt = std::chrono::duration<double>(now - at).count();
  if (dt > 0) tokens = std::min(burst, tokens + dt * static_cast<double>(rate));
  at = now;
}

void Fetcher::Bucket::set(int64_t bytes_per_second, std::chrono::steady_clock::time_point now) {
  refill(now);
  if (bytes_per_second > 0 && rate <= 0) tokens = 0;  // a new limit starts with nothing saved
  rate = std::max<int64_t>(0, bytes_per_second);
  at = now;
}

void Fetcher::set_rate_limit(int64_t bytes_per_second) {
  global_.set(bytes_per_second, std::chrono::steady_clock::now());
}

void Fetcher::set_group_rate_limit(int64_t group, int64_t bytes_per_second) {
  if (bytes_per_second <= 0) {
    groups_.erase(group);
    return;
  }
  groups_[group].set(bytes_per_second, std::chrono::steady_clock::now());
}

bool Fetcher::may_receive(Fetch& f, std::chrono::steady_clock::time_point now) {
  bool ok = true;
  if (global_.rate > 0) {
    global_.refill(now);
    ok = global_.tokens > 0;
  }
  if (f.req.rate_group != 0) {
    if (auto it = groups_.find(f.req.rate_group); it != groups_.end()) {
      it->second.refill(now);
      ok = ok && it->second.tokens > 0;
    }
  }
  return ok;
}

int64_t Fetcher::share_key(const Fetch& f) {
  return f.req.rate_group != 0 ? f.req.rate_group : -static_cast<int64_t>(f.id);
}

void Fetcher::take(Fetch& f, size_t len) {
  if (global_.rate > 0) {
    global_.tokens -= static_cast<double>(len);
    if (auto it = served_.find(share_key(f)); it != served_.end()) {
      it->second += static_cast<double>(len);
    }
  }
  if (f.req.rate_group != 0) {
    if (auto it = groups_.find(f.req.rate_group); it != groups_.end()) {
      it->second.tokens -= static_cast<double>(len);
    }
  }
}

int Fetcher::resume_paused() {
  std::vector<FetchId> paused;
  std::map<int64_t, double> served;  // of the groups that have fetches now
  for (auto& [id, f] : fetches_) {
    if (f->paused) paused.push_back(id);
    served.emplace(share_key(*f), -1);
  }
  if (paused.empty()) {
    served_.clear();
    return -1;
  }
  // A group keeps its count while it has fetches; a new one starts level with the least served,
  // so it neither waits for the others nor takes the whole limit until it has caught up.
  double least = -1;
  for (auto& [key, bytes] : served) {
    if (auto it = served_.find(key); it != served_.end()) {
      bytes = it->second;
      least = least < 0 ? bytes : std::min(least, bytes);
    }
  }
  for (auto& [key, bytes] : served) {
    if (bytes < 0) bytes = std::max(0.0, least);
  }
  served_ = std::move(served);
  // Turns: the least served group first; among equals (the segments of one job), the first
  // fetch after the one resumed last.
  auto first = std::upper_bound(paused.begin(), paused.end(), resume_after_);
  std::rotate(paused.begin(), first, paused.end());
  std::stable_sort(paused.begin(), paused.end(), [&](FetchId a, FetchId b) {
    return served_[share_key(*fetches_[a])] < served_[share_key(*fetches_[b])];
  });
  const auto now = std::chrono::steady_clock::now();
  for (FetchId id : paused) {
    auto it = fetches_.find(id);
    if (it == fetches_.end() || !it->second->paused) continue;
    Fetch& f = *it->second;
    if (!may_receive(f, now)) continue;
    f.paused = false;
    resume_after_ = id;
    // libcurl hands over the bytes it kept from inside this call; write_cb may pause it again.
    curl_easy_pause(f.easy, CURLPAUSE_CONT);
  }
  // How long until the emptiest bucket a paused fetch waits on has tokens again.
  double wait_s = -1;
  auto need = [&](const Bucket& b) {
    if (b.rate > 0 && b.tokens <= 0) {
      wait_s = std::max(wait_s, (1 - b.tokens) / static_cast<double>(b.rate));
    }
  };
  bool any = false;
  double soonest = -1;
  for (auto& [id, f] : fetches_) {
    if (!f->paused) continue;
    any = true;
    wait_s = 0;
    need(global_);
    if (f->req.rate_group != 0) {
      if (auto g = groups_.find(f->req.rate_group); g != groups_.end()) need(g->second);
    }
    soonest = soonest < 0 ? wait_s : std::min(soonest, wait_s);
  }
  if (!any) return -1;
  return std::max(1, static_cast<int>(std::ceil(soonest * 1000)));
}

std::string Fetcher::where(FetchId id) const {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return "GET ?";
  const Fetch& f = *it->second;
  std::string out = "GET " + f.req.url;
  char* final_url = nullptr;
  if (f.easy && curl_easy_getinfo(f.easy, CURLINFO_EFFECTIVE_URL, &final_url) == CURLE_OK &&
      final_url && f.req.url != final_url) {
    out += " (redirected to " + queue::redact_url(final_url) + ")";
  }
  return out;
}

FetchId Fetcher::start(FetchRequest request) {
  auto fp = std::make_unique<Fetch>();
  Fetch& f = *fp;
  f.fetcher = this;
  f.id = next_id_++;
  f.req = std::move(request);
  f.easy = curl_easy_init();
  CURL* e = f.easy;
  curl_easy_setopt(e, CURLOPT_URL, f.req.url.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, &f);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  // A token never travels in clear text: from https, redirects may only go to https.
  f.https_only =
      f.req.access_token && f.req.url.size() > 6 && lower(f.req.url.substr(0, 6)) == "https:";
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, f.https_only ? "https" : "http,https");
  if (options_.block_private_addresses) {
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &Fetcher::open_socket_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &f);
  }
  if (f.req.http1) curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, static_cast<long>(options_.max_redirects));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout.count()));
  long stall_s =
      std::max<long>(1, static_cast<long>((options_.stall_timeout.count() + 999) / 1000));
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall_s);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  // Under a rate limit, smaller reads: each is let through whole, so a read of 256 KiB at a
  // limit of 512 KiB/s would be half a second's worth at once. 1 KiB is libcurl's least.
  int64_t limit = global_.rate;
  if (auto g = groups_.find(f.req.rate_group); f.req.rate_group != 0 && g != groups_.end()) {
    limit = limit > 0 ? std::min(limit, g->second.rate) : g->second.rate;
  }
  const int64_t buffer =
      limit > 0 ? std::clamp<int64_t>(limit / 32, 1 << 10, 256 << 10) : 256 << 10;
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, static_cast<long>(buffer));
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f.curl_error);
  static const std::string ua = std::string("fetchq/") + kVersion;
  curl_easy_setopt(e, CURLOPT_USERAGENT, f.req.user_agent ? f.req.user_agent->c_str() : ua.c_str());
  if (!options_.ca_cert.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_cert.c_str());
  if (!options_.proxy.empty()) curl_easy_setopt(e, CURLOPT_PROXY, options_.proxy.c_str());
  f.headers = curl_slist_append(f.headers, "Accept-Encoding: identity");
  if (f.req.range) {
    std::string range = "Range: bytes=" + std::to_string(f.req.range->start) + "-";
    if (f.req.range->end >= 0) range += std::to_string(f.req.range->end - 1);
    f.headers = curl_slist_append(f.headers, range.c_str());
  }
  for (const auto& h : f.req.headers) f.headers = curl_slist_append(f.headers, h.c_str());
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, f.headers);
  if (f.req.access_token) {
    // libcurl sends it to the original host only: never after a redirect to another host.
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
    curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, f.req.access_token->c_str());
  } else if (f.req.password) {
    // Apart from the URL, so no message built from it holds them. Like a token, libcurl sends
    // them to the original scheme, host and port only (CURLOPT_UNRESTRICTED_AUTH stays off).
    curl_easy_setopt(e, CURLOPT_USERNAME, f.req.username.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, f.req.password->c_str());
  }
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Fetcher::header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &f);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Fetcher::write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &f);
  const FetchId id = f.id;
  fetches_[id] = std::move(fp);
  curl_multi_add_handle(multi_, e);
  return id;
}

void Fetcher::cancel(FetchId id) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return;
  Fetch& f = *it->second;
  curl_multi_remove_handle(multi_, f.easy);
  curl_easy_cleanup(f.easy);
  curl_slist_free_all(f.headers);
  fetches_.erase(it);
}

void Fetcher::done(FetchId id, CURLcode code) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return;
  Fetch& f = *it->second;
  if (code == CURLE_OK && !f.responded) {  // an empty body: the head is all there is
    f.responded = true;
    long status = 0;
    curl_easy_getinfo(f.easy, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t clen = -1;
    curl_easy_getinfo(f.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
    FetchResponse r{
        .code = status, .content_length = static_cast<int64_t>(clen), .headers = &f.resp_headers};
    client_->on_response(id, r);
  }
  std::optional<Failure> failure = std::move(f.failure);
  if (!failure && code != CURLE_OK) {
    auto [type, retryable] = classify(code);
    std::string detail = f.curl_error[0] ? f.curl_error : curl_easy_strerror(code);
    if (code == CURLE_OPERATION_TIMEDOUT && f.responded) type = "Stalled";
    // Where the refused redirect pointed: libcurl has made it the effective URL by the time
    // it checks the protocol; the redirect URL is asked too, in case it has not.
    std::string next;
    for (CURLINFO info : {CURLINFO_REDIRECT_URL, CURLINFO_EFFECTIVE_URL}) {
      char* u = nullptr;
      if (next.empty() && curl_easy_getinfo(f.easy, info, &u) == CURLE_OK && u) next = u;
    }
    if (code == CURLE_UNSUPPORTED_PROTOCOL && f.https_only && lower(next.substr(0, 5)) == "http:") {
      type = "InsecureRedirect";
      detail = "refused to follow the redirect to " + queue::redact_url(next) +
               ": the job has an access token, which is never sent over plain http";
    } else if (!f.responded &&
               (code == CURLE_OUT_OF_MEMORY ||
                (code == CURLE_RECV_ERROR && detail.find("header") != std::string::npos))) {
      // A header line over libcurl's 100 KB, or a block over its 300 KB: the same each try.
      type = "HeaderTooLarge";
      retryable = false;
      detail =
          code == CURLE_OUT_OF_MEMORY
              ? "a response header line is longer than libcurl accepts (100 KB); refused"
              : "the response headers are larger than libcurl accepts (" + detail + "); refused";
    } else if (!f.responded && code == CURLE_WEIRD_SERVER_REPLY &&
               detail.find("Nul byte") != std::string::npos) {
      // libcurl refuses the whole response before fetchq sees a header, so there is no
      // falling back to the URL's name; the server would send the same again.
      type = "BadResponseHeader";
      retryable = false;
      detail = "a response header holds a NUL byte, and libcurl refuses such responses";
    }
    failure = Failure{.type = type, .message = where(id) + ": " + detail, .retryable = retryable};
  }
  client_->on_done(id, std::move(failure));
  cancel(id);  // the client may have let go of it already
}

}  // namespace fetchq::transfer
