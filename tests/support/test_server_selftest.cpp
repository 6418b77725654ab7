// Self-test for the fetchq test server: checks its bytes on the wire with a raw-socket client and curl.
#include "test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using fetchq::testing::make_body;
using fetchq::testing::RequestLog;
using fetchq::testing::Resource;
using fetchq::testing::sha256_file;
using fetchq::testing::sha256_hex_of;
using fetchq::testing::TestServer;
using Clock = std::chrono::steady_clock;

// Generous: only reached when the server misbehaves by accident.
constexpr int kTimeoutMs = 10000;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Owns a client socket so failing assertions cannot leak descriptors.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) close();
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool ok() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Appends what arrives within timeout_ms to buf_. Returns bytes read,
  // 0 on EOF, -1 on timeout or error.
  ssize_t read_some(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return -1;
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n > 0) buf_.append(tmp, static_cast<size_t>(n));
    if (n == 0) eof_ = true;
    return n;
  }

  // Reads until EOF; false if the deadline passed first.
  bool read_to_eof(int timeout_ms = kTimeoutMs) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!eof_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || read_some(static_cast<int>(left)) < 0) return false;
    }
    return true;
  }

  // Reads until buf_ holds at least n bytes; false on EOF/timeout first.
  bool read_at_least(size_t n, int timeout_ms = kTimeoutMs) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (buf_.size() < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || read_some(static_cast<int>(left)) <= 0) return false;
    }
    return true;
  }

  std::string buf_;
  bool eof_ = false;

 private:
  int fd_ = -1;
};

struct Response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;                                          // bytes after the head, as received

  std::optional<std::string> header(std::string_view lower_name) const {
    for (const auto& [n, v] : headers) {
      if (n == lower_name) return v;
    }
    return std::nullopt;
  }
  size_t count(std::string_view lower_name) const {
    size_t c = 0;
    for (const auto& h : headers) c += h.first == lower_name;
    return c;
  }
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Parses the head at the front of raw; the rest is returned as body.
// Returns the head length via head_len (0 if no complete head).
Response parse_head(std::string_view raw, size_t* head_len) {
  Response r;
  *head_len = 0;
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string_view::npos) return r;
  *head_len = end + 4;
  std::string_view head = raw.substr(0, end + 2);
  size_t eol = head.find("\r\n");
  const std::string_view status_line = head.substr(0, eol);
  if (status_line.size() >= 12 && status_line.substr(0, 9) == "HTTP/1.1 ") {
    r.status = std::stoi(std::string(status_line.substr(9, 3)));
  }
  head.remove_prefix(eol + 2);
  while (!head.empty()) {
    eol = head.find("\r\n");
    const std::string_view line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    const size_t colon = line.find(':');
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    r.headers.emplace_back(lower(std::string(line.substr(0, colon))), std::string(value));
  }
  return r;
}

Response parse_response(std::string_view raw) {
  size_t head_len = 0;
  Response r = parse_head(raw, &head_len);
  r.body = std::string(raw.substr(head_len));
  return r;
}

// Reads exactly one Content-Length-delimited response from a kept-alive
// connection, leaving any following bytes in c.buf_.
Response read_one(Client& c, bool head_request = false) {
  size_t head_len = 0;
  Response r;
  for (;;) {
    r = parse_head(c.buf_, &head_len);
    if (head_len != 0) break;
    if (c.read_some(kTimeoutMs) <= 0) return Response{};
  }
  const size_t body_len = head_request ? 0 : std::stoul(r.header("content-length").value_or("0"));
  if (!c.read_at_least(head_len + body_len)) return Response{};
  r.body = c.buf_.substr(head_len, body_len);
  c.buf_.erase(0, head_len + body_len);
  return r;
}

// Decodes chunked framing; *complete is set when the 0-chunk terminator and
// nothing else follows.
std::string decode_chunked(std::string_view in, bool* complete) {
  std::string out;
  *complete = false;
  for (;;) {
    const size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) return out;
    const size_t size = std::stoul(std::string(in.substr(0, eol)), nullptr, 16);
    in.remove_prefix(eol + 2);
    if (size == 0) {
      *complete = in == "\r\n";
      return out;
    }
    if (in.size() < size + 2 || in.substr(size, 2) != "\r\n") return out;
    out.append(in.substr(0, size));
    in.remove_prefix(size + 2);
  }
}

std::string get_request(std::string_view target, const std::vector<std::string>& extra = {},
                        std::string_view method = "GET", bool close = true) {
  std::string req = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& line : extra) req += line + "\r\n";
  if (close) req += "Connection: close\r\n";
  return req + "\r\n";
}

// One request on a fresh connection, read until the server closes it.
Response fetch(const TestServer& s, std::string_view target, const std::vector<std::string>& extra = {},
               std::string_view method = "GET") {
  Client c(s.port());
  EXPECT_TRUE(c.ok());
  EXPECT_TRUE(c.send(get_request(target, extra, method)));
  EXPECT_TRUE(c.read_to_eof()) << "server did not close the connection";
  return parse_response(c.buf_);
}

Resource with_body(std::string body) {
  Resource r;
  r.body = std::move(body);
  return r;
}

// Waits for the server to log a finished response for path.
std::optional<RequestLog> wait_finished(const TestServer& s, std::string_view path, size_t index = 0) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(kTimeoutMs);
  while (Clock::now() < deadline) {
    const auto reqs = s.requests_for(path);
    if (reqs.size() > index && reqs[index].status != 0) return reqs[index];
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::nullopt;
}

bool have_tool(const char* check_cmd) { return std::system(check_cmd) == 0; }

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "fetchq_ts_" + std::to_string(::getpid()) + "_" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// ---------------------------------------------------------------- hashing

TEST(Sha256, KnownAnswers) {
  EXPECT_EQ(sha256_hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Two-block message (padding spills into a second block).
  EXPECT_EQ(sha256_hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex_of(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, FileMatchesSha256sumAtBlockBoundaries) {
  if (!have_tool("sha256sum --version >/dev/null 2>&1")) GTEST_SKIP() << "sha256sum not installed";
  for (size_t n : {0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 65535, 65536, 65537, 300001}) {
    const std::string path = temp_path("hash_" + std::to_string(n));
    const std::string body = make_body(n, 7);
    std::ofstream(path, std::ios::binary).write(body.data(), static_cast<std::streamsize>(body.size()));
    std::string expected(64, '\0');
    FILE* p = ::popen(("sha256sum " + path).c_str(), "r");
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(std::fread(expected.data(), 1, 64, p), 64u);
    ::pclose(p);
    EXPECT_EQ(sha256_file(path), expected) << "n=" << n;
    EXPECT_EQ(sha256_hex_of(body), expected) << "n=" << n;
    std::filesystem::remove(path);
  }
  EXPECT_EQ(sha256_file(temp_path("does_not_exist")), "");
}

TEST(MakeBody, DeterministicPrefixStableAndSeeded) {
  EXPECT_EQ(make_body(1000), make_body(1000, 1));
  EXPECT_EQ(make_body(1000).size(), 1000u);
  EXPECT_EQ(make_body(0), "");
  EXPECT_EQ(make_body(4097, 3).substr(0, 1001), make_body(1001, 3));
  EXPECT_NE(make_body(64, 1), make_body(64, 2));
}

// ---------------------------------------------------------------- basic GET/HEAD

TEST(TestServer, WholeBody) {
  TestServer s;
  const std::string body = make_body(200000);
  s.add("/f.bin", with_body(body));
  const Response r = fetch(s, "/f.bin");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-length"), "200000");
  EXPECT_EQ(r.header("accept-ranges"), "bytes");
  EXPECT_EQ(r.header("connection"), "close");
  const auto etag = r.header("etag");
  ASSERT_TRUE(etag.has_value());
  EXPECT_EQ(etag->front(), '"');
  EXPECT_EQ(etag->back(), '"');
  EXPECT_EQ(r.body.size(), body.size());
  EXPECT_EQ(sha256_hex_of(r.body), sha256_hex_of(body));
  EXPECT_EQ(r.body, body);
  const auto log = s.requests();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].status, 200);
  EXPECT_EQ(log[0].body_bytes_sent, body.size());
  EXPECT_EQ(s.total_body_bytes_sent(), body.size());
  EXPECT_EQ(s.url("/f.bin"), "http://127.0.0.1:" + std::to_string(s.port()) + "/f.bin");
}

TEST(TestServer, UnknownPathIs404WithLength) {
  TestServer s;
  const Response r = fetch(s, "/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
}

TEST(TestServer, ErrorStatusWithRetryAfter) {
  TestServer s;
  Resource res = with_body("ignored");
  res.status = 503;
  res.retry_after = "7";
  s.add("/busy", res);
  const Response r = fetch(s, "/busy");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.header("retry-after"), "7");
  EXPECT_EQ(r.header("content-length"), "6");
  EXPECT_EQ(r.body, "error\n");
}

TEST(TestServer, HeadThenGetOnOneKeptAliveConnection) {
  TestServer s;
  const std::string body = make_body(5000);
  s.add("/k", with_body(body));
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send(get_request("/k", {}, "HEAD", false)));
  const Response head = read_one(c, true);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-length"), "5000");
  EXPECT_FALSE(head.header("connection").has_value());
  ASSERT_TRUE(c.send(get_request("/k", {}, "GET", false)));
  const Response get = read_one(c);
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body, body);
  // Nothing extra after the body: HEAD really sent no body.
  EXPECT_EQ(c.read_some(100), -1);
  EXPECT_EQ(c.buf_, "");
  EXPECT_EQ(s.requests_for("/k").size(), 2u);
}

TEST(TestServer, PipelinedRequests) {
  TestServer s;
  s.add("/a", with_body("alpha"));
  s.add("/b", with_body("bravo!"));
  Client c(s.port());
  ASSERT_TRUE(c.send(get_request("/a", {}, "GET", false) + get_request("/b", {}, "GET", false)));
  EXPECT_EQ(read_one(c).body, "alpha");
  EXPECT_EQ(read_one(c).body, "bravo!");
  const auto log = s.requests();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].path, "/a");
  EXPECT_EQ(log[1].path, "/b");
}

TEST(TestServer, HeadersFromResource) {
  TestServer s;
  Resource res = with_body("x");
  res.content_disposition = "attachment; filename=\"r.txt\"";
  res.etag = "\"v1\"";
  res.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
  res.content_encoding = "gzip";
  res.extra_headers = {{"Content-Type", "text/plain"}, {"X-Test", "1"}};
  s.add("/h", res);
  const Response r = fetch(s, "/h");
  EXPECT_EQ(r.header("content-disposition"), "attachment; filename=\"r.txt\"");
  EXPECT_EQ(r.header("etag"), "\"v1\"");
  EXPECT_EQ(r.header("last-modified"), "Wed, 21 Oct 2015 07:28:00 GMT");
  EXPECT_EQ(r.header("content-encoding"), "gzip");
  EXPECT_EQ(r.header("content-type"), "text/plain");
  EXPECT_EQ(r.header("x-test"), "1");

  res.etag = "";
  s.add("/h", res);
  EXPECT_FALSE(fetch(s, "/h").header("etag").has_value());
}

// ---------------------------------------------------------------- ranges

TEST(TestServer, RangeGives206WithContentRange) {
  TestServer s;
  const std::string body = make_body(100000);
  s.add("/r", with_body(body));

  Response r = fetch(s, "/r", {"Range: bytes=1000-"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.header("content-range"), "bytes 1000-99999/100000");
  EXPECT_EQ(r.header("content-length"), "99000");
  EXPECT_EQ(r.body, body.substr(1000));

  r = fetch(s, "/r", {"Range: bytes=10-19"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.header("content-range"), "bytes 10-19/100000");
  EXPECT_EQ(r.body, body.substr(10, 10));

  r = fetch(s, "/r", {"Range: bytes=99990-200000"});  // end clamped
  EXPECT_EQ(r.header("content-range"), "bytes 99990-99999/100000");
  EXPECT_EQ(r.body, body.substr(99990));

  r = fetch(s, "/r", {"range: BYTES=-5"});  // suffix, case-insensitive
  EXPECT_EQ(r.header("content-range"), "bytes 99995-99999/100000");
  EXPECT_EQ(r.body, body.substr(99995));

  r = fetch(s, "/r", {"Range: bytes=0-1,5-6"});  // multi-range: ignored
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, body);

  EXPECT_EQ(s.requests_for("/r")[0].body_bytes_sent, 99000u);
}

TEST(TestServer, HonourRangeFalseSendsWhole) {
  TestServer s;
  Resource res = with_body(make_body(3000));
  res.honour_range = false;
  s.add("/nr", res);
  const Response r = fetch(s, "/nr", {"Range: bytes=100-"});
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.header("content-range").has_value());
  EXPECT_FALSE(r.header("accept-ranges").has_value());
  EXPECT_EQ(r.body, res.body);
}

TEST(TestServer, IfRange) {
  TestServer s;
  const std::string body = make_body(4000);
  Resource res = with_body(body);
  res.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
  s.add("/ir", res);
  const std::string etag = fetch(s, "/ir").header("etag").value_or("");
  ASSERT_FALSE(etag.empty());

  Response r = fetch(s, "/ir", {"Range: bytes=100-", "If-Range: " + etag});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, body.substr(100));

  r = fetch(s, "/ir", {"Range: bytes=100-", "If-Range: \"something-else\""});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, body);

  r = fetch(s, "/ir", {"Range: bytes=100-", "If-Range: W/" + etag});  // weak never matches
  EXPECT_EQ(r.status, 200);

  r = fetch(s, "/ir", {"Range: bytes=100-", "If-Range: Wed, 21 Oct 2015 07:28:00 GMT"});
  EXPECT_EQ(r.status, 206);
  r = fetch(s, "/ir", {"Range: bytes=100-", "If-Range: Thu, 22 Oct 2015 07:28:00 GMT"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, body);
}

TEST(TestServer, EtagChangesDefeatsIfRange) {
  TestServer s;
  Resource res = with_body(make_body(4000));
  res.etag_changes = true;
  s.add("/ec", res);
  const std::string first = fetch(s, "/ec").header("etag").value_or("");
  const Response r = fetch(s, "/ec", {"Range: bytes=100-", "If-Range: " + first});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, res.body);
  EXPECT_NE(r.header("etag").value_or(""), first);
  EXPECT_EQ(r.header("etag")->front(), '"');
  EXPECT_EQ(r.header("etag")->back(), '"');
}

TEST(TestServer, UnsatisfiableRangeVariants) {
  TestServer s;
  Resource res = with_body(make_body(100));
  s.add("/n", res);
  res.on416 = Resource::On416::kWithContentRange;
  s.add("/w", res);
  res.on416 = Resource::On416::kWithoutContentRange;
  s.add("/wo", res);

  for (const char* path : {"/n", "/w"}) {
    const Response r = fetch(s, path, {"Range: bytes=100-"});
    EXPECT_EQ(r.status, 416) << path;
    EXPECT_EQ(r.header("content-range"), "bytes */100") << path;
    EXPECT_EQ(r.header("content-length"), "0") << path;
    EXPECT_EQ(r.body, "") << path;
  }
  const Response r = fetch(s, "/wo", {"Range: bytes=150-"});
  EXPECT_EQ(r.status, 416);
  EXPECT_FALSE(r.header("content-range").has_value());
  EXPECT_EQ(r.header("content-length"), "0");
  // The last byte is still satisfiable.
  EXPECT_EQ(fetch(s, "/wo", {"Range: bytes=99-"}).status, 206);
}

TEST(TestServer, WrongRangeStart) {
  TestServer s;
  const std::string body = make_body(1000);
  Resource res = with_body(body);
  res.wrong_range_start = 0;
  s.add("/wrs", res);
  Response r = fetch(s, "/wrs", {"Range: bytes=500-"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.header("content-range"), "bytes 0-999/1000");
  EXPECT_EQ(r.body, body);

  res.wrong_range_start = 100;
  s.add("/wrs", res);
  r = fetch(s, "/wrs", {"Range: bytes=500-599"});
  EXPECT_EQ(r.header("content-range"), "bytes 100-599/1000");
  EXPECT_EQ(r.body, body.substr(100, 500));
}

// ---------------------------------------------------------------- framing

TEST(TestServer, DropAfterCutsExactlyForDropTimes) {
  TestServer s;
  const std::string body = make_body(100000);
  Resource res = with_body(body);
  res.drop_after = 1234;
  res.drop_times = 2;
  s.add("/d", res);
  for (int i = 0; i < 2; ++i) {
    Client c(s.port());
    ASSERT_TRUE(c.send(get_request("/d", {}, "GET", false)));  // keep-alive asked, still cut
    ASSERT_TRUE(c.read_to_eof());
    const Response r = parse_response(c.buf_);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-length"), "100000");
    EXPECT_EQ(r.body, body.substr(0, 1234)) << "attempt " << i;
  }
  EXPECT_EQ(fetch(s, "/d").body, body);
  const auto log = s.requests_for("/d");
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0].body_bytes_sent, 1234u);
  EXPECT_EQ(log[1].body_bytes_sent, 1234u);
  EXPECT_EQ(log[2].body_bytes_sent, 100000u);
  EXPECT_EQ(s.total_body_bytes_sent(), 1234u * 2 + 100000u);
}

TEST(TestServer, DropAfterZeroSendsOnlyHead) {
  TestServer s;
  Resource res = with_body(make_body(10));
  res.drop_after = 0;
  s.add("/d0", res);
  const Response r = fetch(s, "/d0");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
}

TEST(TestServer, NoLengthIsCloseDelimited) {
  TestServer s;
  const std::string body = make_body(70000);
  Resource res = with_body(body);
  res.no_length = true;
  s.add("/nl", res);
  Client c(s.port());
  ASSERT_TRUE(c.send(get_request("/nl", {}, "GET", false)));
  ASSERT_TRUE(c.read_to_eof());
  const Response r = parse_response(c.buf_);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.count("content-length"), 0u);
  EXPECT_EQ(r.count("transfer-encoding"), 0u);
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_EQ(r.body, body);
}

TEST(TestServer, ChunkedDecodes) {
  TestServer s;
  const std::string body = make_body(50000);
  Resource res = with_body(body);
  res.chunked = true;
  s.add("/c", res);
  const Response r = fetch(s, "/c");
  EXPECT_EQ(r.header("transfer-encoding"), "chunked");
  EXPECT_EQ(r.count("content-length"), 0u);
  bool complete = false;
  EXPECT_EQ(decode_chunked(r.body, &complete), body);
  EXPECT_TRUE(complete);

  // Chunked is self-delimiting, so the connection stays usable.
  Client c(s.port());
  ASSERT_TRUE(c.send(get_request("/c", {"Range: bytes=49990-"}, "GET", false)));
  ASSERT_TRUE(c.read_at_least(1));
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (c.buf_.find("\r\n0\r\n\r\n") == std::string::npos && Clock::now() < deadline) c.read_some(100);
  size_t head_len = 0;
  const Response ranged = parse_head(c.buf_, &head_len);
  EXPECT_EQ(ranged.status, 206);
  EXPECT_EQ(decode_chunked(std::string_view(c.buf_).substr(head_len), &complete), body.substr(49990));
  EXPECT_TRUE(complete);
  EXPECT_EQ(c.read_some(100), -1);  // not closed
}

TEST(TestServer, LieLength) {
  TestServer s;
  Resource res = with_body(make_body(1000));
  res.lie_length = 1500;
  s.add("/lie", res);
  const Response r = fetch(s, "/lie");
  EXPECT_EQ(r.header("content-length"), "1500");
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_EQ(r.body, res.body);
}

TEST(TestServer, Redirect) {
  TestServer s;
  Resource res;
  res.redirect_to = "/target";
  s.add("/from", res);
  const Response r = fetch(s, "/from");
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(r.header("location"), "/target");
  EXPECT_EQ(r.header("content-length"), "0");
  EXPECT_EQ(r.body, "");

  res.status = 308;
  res.redirect_to = s.url("/abs");
  s.add("/from", res);
  const Response r2 = fetch(s, "/from");
  EXPECT_EQ(r2.status, 308);
  EXPECT_EQ(r2.header("location"), s.url("/abs"));
}

TEST(TestServer, RawHandler) {
  TestServer s;
  s.add("/raw", with_body("shadowed"));
  s.set_handler("/raw", [](const RequestLog& req, int fd) {
    const std::string out = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Path: " + req.path + "\r\n\r\nhel";
    ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
  });
  const Response r = fetch(s, "/raw?q=1");
  EXPECT_EQ(r.header("x-path"), "/raw");
  EXPECT_EQ(r.body, "hel");
}

TEST(TestServer, BadRequestAndOtherMethods) {
  TestServer s;
  s.add("/x", with_body("x"));
  Client c(s.port());
  ASSERT_TRUE(c.send("NONSENSE\r\n\r\n"));
  ASSERT_TRUE(c.read_to_eof());
  EXPECT_EQ(parse_response(c.buf_).status, 400);

  // The request body is read and discarded, so the connection stays in sync.
  Client k(s.port());
  ASSERT_TRUE(k.send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
                     get_request("/x", {}, "GET", false)));
  EXPECT_EQ(read_one(k).status, 405);
  EXPECT_EQ(read_one(k).body, "x");
}

// ---------------------------------------------------------------- log

TEST(TestServer, LogRecordsRequestHeaders) {
  TestServer s;
  s.add("/f", with_body(make_body(100)));
  fetch(s, "/f?x=1&y=2", {"Range: bytes=10-", "If-Range: \"abc\"", "authorization: Bearer t0k",
                          "User-Agent: fetchq/0.1", "Accept-Encoding: identity"});
  auto log = s.requests();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].method, "GET");
  EXPECT_EQ(log[0].path, "/f");
  EXPECT_EQ(log[0].target, "/f?x=1&y=2");
  EXPECT_EQ(log[0].range, "bytes=10-");
  EXPECT_EQ(log[0].if_range, "\"abc\"");
  EXPECT_EQ(log[0].authorization, "Bearer t0k");
  EXPECT_EQ(log[0].user_agent, "fetchq/0.1");
  EXPECT_EQ(log[0].accept_encoding, "identity");
  EXPECT_EQ(log[0].host, "127.0.0.1");
  EXPECT_EQ(log[0].status, 200);  // If-Range mismatch
  EXPECT_EQ(log[0].body_bytes_sent, 100u);
  EXPECT_EQ(s.requests_for("/f").size(), 1u);
  EXPECT_EQ(s.requests_for("/g").size(), 0u);
  s.reset_log();
  EXPECT_TRUE(s.requests().empty());
  EXPECT_EQ(s.total_body_bytes_sent(), 0u);
}

TEST(TestServer, ConcurrentClientsWhileReadingLog) {
  TestServer s;
  const std::string body = make_body(30000);
  s.add("/p", with_body(body));
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        Client c(s.port());
        c.send(get_request("/p"));
        if (c.read_to_eof() && parse_response(c.buf_).body == body) ++good;
      }
    });
  }
  for (int i = 0; i < 50; ++i) {
    (void)s.requests();
    (void)s.total_body_bytes_sent();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(good, 40);
  EXPECT_EQ(s.requests().size(), 40u);
  EXPECT_EQ(s.total_body_bytes_sent(), 40u * body.size());
}

// ---------------------------------------------------------------- timing

TEST(TestServer, ThrottleTakesAboutTheRightTime) {
  TestServer s;
  const std::string body = make_body(96 * 1024);
  Resource res = with_body(body);
  res.rate_bytes_per_s = 192 * 1024;  // the last piece goes out at ~0.42 s
  s.add("/slow", res);
  const auto t0 = Clock::now();
  const Response r = fetch(s, "/slow");
  const double elapsed = seconds_since(t0);
  EXPECT_EQ(r.body, body);
  EXPECT_GE(elapsed, 0.35);
  EXPECT_LT(elapsed, 5.0);
}

TEST(TestServer, ThrottleStopsWhenClientLeaves) {
  TestServer s;
  Resource res = with_body(make_body(1000000));
  res.rate_bytes_per_s = 20000;
  s.add("/slow", res);
  {
    Client c(s.port());
    ASSERT_TRUE(c.send(get_request("/slow")));
    ASSERT_TRUE(c.read_at_least(3000));
  }
  const auto t0 = Clock::now();
  const auto done = wait_finished(s, "/slow");
  ASSERT_TRUE(done.has_value());
  EXPECT_LT(seconds_since(t0), 2.0);
  EXPECT_LT(done->body_bytes_sent, 100000u);
}

TEST(TestServer, StallHoldsConnectionOpen) {
  TestServer s;
  const std::string body = make_body(100000);
  Resource res = with_body(body);
  res.stall_after = 1000;
  s.add("/stall", res);
  Client c(s.port());
  ASSERT_TRUE(c.send(get_request("/stall")));
  size_t head_len = 0;
  while (head_len == 0 && c.read_some(kTimeoutMs) > 0) parse_head(c.buf_, &head_len);
  ASSERT_NE(head_len, 0u);
  ASSERT_TRUE(c.read_at_least(head_len + 1000));
  EXPECT_EQ(c.read_some(300), -1);  // nothing more, and no EOF
  EXPECT_EQ(c.buf_.substr(head_len), body.substr(0, 1000));
  ASSERT_EQ(s.requests_for("/stall").size(), 1u);
  EXPECT_EQ(s.requests_for("/stall")[0].status, 0);  // still in flight
  c.close();
  const auto done = wait_finished(s, "/stall");
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->body_bytes_sent, 1000u);
}

TEST(TestServer, DestructorIsPromptWithResponsesInFlight) {
  auto s = std::make_unique<TestServer>();
  Resource stall = with_body(make_body(1000000));
  stall.stall_after = 1000;
  s->add("/stall", stall);
  Resource slow = with_body(make_body(1000000));
  slow.rate_bytes_per_s = 10000;
  s->add("/slow", slow);
  s->add("/big", with_body(make_body(32 * 1024 * 1024)));  // client never reads it: server blocks in send()
  s->add("/small", with_body("ok"));

  Client stalled(s->port()), throttled(s->port()), blocked(s->port()), idle(s->port()), kept(s->port());
  ASSERT_TRUE(stalled.send(get_request("/stall")));
  ASSERT_TRUE(throttled.send(get_request("/slow")));
  ASSERT_TRUE(blocked.send(get_request("/big")));
  ASSERT_TRUE(kept.send(get_request("/small", {}, "GET", false)));
  ASSERT_TRUE(stalled.read_at_least(1000));
  ASSERT_TRUE(throttled.read_at_least(2000));
  ASSERT_TRUE(blocked.read_at_least(1));
  EXPECT_EQ(read_one(kept).body, "ok");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let /big fill the socket buffers

  const auto t0 = Clock::now();
  s.reset();
  const double stop_time = seconds_since(t0);
  EXPECT_LT(stop_time, 1.5);
  RecordProperty("stop_ms", static_cast<int>(stop_time * 1000));
  // Every client now sees the connection end.
  EXPECT_TRUE(stalled.read_to_eof(2000));
  EXPECT_TRUE(throttled.read_to_eof(2000));
  EXPECT_TRUE(idle.read_to_eof(2000));
  EXPECT_TRUE(kept.read_to_eof(2000));
}

// ---------------------------------------------------------------- curl

class WithCurl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_tool("curl --version >/dev/null 2>&1")) GTEST_SKIP() << "curl not installed";
  }
  // Runs curl; returns its exit status.
  static int curl(const std::string& args) { return std::system(("curl -s -S " + args).c_str()); }
};

TEST_F(WithCurl, WholeRangeChunkedAndRedirect) {
  TestServer s;
  const std::string body = make_body(300000, 9);
  s.add("/whole", with_body(body));
  Resource chunked = with_body(body);
  chunked.chunked = true;
  s.add("/chunked", chunked);
  Resource redirect;
  redirect.redirect_to = "/whole";
  s.add("/go", redirect);

  const std::string out = temp_path("curl_out");
  const std::string hdr = temp_path("curl_hdr");
  ASSERT_EQ(curl("-o " + out + " " + s.url("/whole")), 0);
  EXPECT_EQ(sha256_file(out), sha256_hex_of(body));

  ASSERT_EQ(curl("-r 1000-1999 -D " + hdr + " -o " + out + " " + s.url("/whole")), 0);
  EXPECT_EQ(read_file(out), body.substr(1000, 1000));
  EXPECT_NE(read_file(hdr).find("Content-Range: bytes 1000-1999/300000\r\n"), std::string::npos);

  ASSERT_EQ(curl("-D " + hdr + " -o " + out + " " + s.url("/chunked")), 0);
  EXPECT_NE(read_file(hdr).find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(sha256_file(out), sha256_hex_of(body));

  ASSERT_EQ(curl("-L -o " + out + " " + s.url("/go")), 0);
  EXPECT_EQ(sha256_file(out), sha256_hex_of(body));
  ASSERT_EQ(s.requests_for("/go").size(), 1u);
  EXPECT_EQ(s.requests_for("/go")[0].status, 302);

  // curl must notice the cut (exit 18: partial file).
  Resource drop = with_body(body);
  drop.drop_after = 5000;
  s.add("/drop", drop);
  EXPECT_EQ(curl("-o " + out + " " + s.url("/drop") + " 2>/dev/null") >> 8, 18);
  EXPECT_EQ(read_file(out), body.substr(0, 5000));

  std::filesystem::remove(out);
  std::filesystem::remove(hdr);
}

}  // namespace
