// Request options of a job: its headers and User-Agent go with every request (the first, each
// segment's, each resume's, after a restart), secret headers are shown nowhere, malformed and
// engine-owned headers are refused, a private CA is trusted over real TLS, and a proxy carries
// the requests. The real queue, fetchq and fetchqd against the in-process HTTP server, with a
// TLS front (support/tls_front.h) for https and a second server as a forward proxy.
#include <SQLiteCpp/SQLiteCpp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "integration/helpers.h"
#include "support/process.h"
#include "support/tls_front.h"

namespace fetchq::testing {
namespace {

constexpr const char* kAuthSecret = "hdr-auth-secret";
constexpr const char* kCookieSecret = "hdr-cookie-secret";

std::string whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

DownloadOptions with_headers() {
  DownloadOptions o;
  o.headers = {{"X-Trace", "trace-1"},
               {"Authorization", std::string("Bearer ") + kAuthSecret},
               {"Cookie", std::string("sid=") + kCookieSecret}};
  o.user_agent = "agent/7 (test)";
  return o;
}

// Every request of `reqs` carried the headers and user agent of with_headers().
void expect_options_on_each(const std::vector<RequestLog>& reqs) {
  for (const auto& rq : reqs) {
    EXPECT_EQ(header_of(rq, "x-trace"), "trace-1") << rq.range;
    EXPECT_EQ(rq.authorization, std::string("Bearer ") + kAuthSecret) << rq.range;
    EXPECT_EQ(header_of(rq, "cookie"), std::string("sid=") + kCookieSecret) << rq.range;
    EXPECT_EQ(rq.user_agent, "agent/7 (test)") << rq.range;
  }
}

void expect_no_secret(const std::string& text) {
  EXPECT_EQ(text.find(kAuthSecret), std::string::npos) << text;
  EXPECT_EQ(text.find(kCookieSecret), std::string::npos) << text;
}

std::string rpc(const std::string& sock, const std::string& line) {
  int fd = connect_unix(sock);
  if (fd < 0) return "";
  send_all(fd, line + "\n");
  std::string out;
  char buf[4096];
  while (out.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

TEST(RequestOptions, HeadersAndUserAgentGoWithEverySegmentAndTheResumeAfterARestart) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(24 << 20, 81);  // over the 16 MiB threshold: segmented
  r.rate_bytes_per_s = 2 << 20;
  server.add("/big.bin", r);
  QueueOptions o = fast_options(dir);
  o.connections = 4;
  size_t before_restart = 0;
  int64_t id = 0;
  {
    auto q = open_queue(o);
    id = submit(*q, server.url("/big.bin"), dir / "big.bin", with_headers()).id;
    ASSERT_TRUE(wait_until([&] { return q->id_to_job(id)->bytes > (2 << 20); }));
    q->shutdown();
    before_restart = server.requests_for("/big.bin").size();
  }
  r.rate_bytes_per_s = 16 << 20;
  server.add("/big.bin", r);
  {
    auto q = open_queue(o);  // the headers come back from the database
    ASSERT_TRUE(q->join(std::chrono::seconds(60)));
    auto j = q->id_to_job(id);
    ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  }
  EXPECT_EQ(sha256_file(dir / "big.bin"), sha256_hex_of(r.body));
  auto reqs = server.requests_for("/big.bin");
  EXPECT_GT(reqs.size(), before_restart) << "nothing was asked after the restart";
  int ranged = 0;
  for (const auto& rq : reqs) ranged += !rq.range.empty();
  EXPECT_GE(ranged, 4) << "not segmented";
  expect_options_on_each(reqs);
}

TEST(RequestOptions, SecretHeadersAreShownAsSecretAndKeptOutOfJobsAndEvents) {
  TempDir dir;
  TestServer server;
  Resource ok;
  ok.body = "data";
  server.add("/ok", ok);
  Resource missing;
  missing.status = 404;
  server.add("/missing", missing);
  {
    auto q = open_queue(fast_options(dir));
    auto a = submit(*q, server.url("/ok"), dir / "ok.bin", with_headers());
    auto b = submit(*q, server.url("/missing"), dir / "missing.bin", with_headers());
    const std::vector<std::string> shown = {"X-Trace: trace-1", "Authorization: <secret>", "Cookie: <secret>"};
    EXPECT_EQ(a.headers, shown);
    EXPECT_EQ(a.user_agent, "agent/7 (test)");
    ASSERT_TRUE(q->join(std::chrono::seconds(20)));
    EXPECT_EQ(q->id_to_job(a.id)->headers, shown);
    EXPECT_EQ(q->id_to_job(b.id)->status, JobStatus::kError);
    expect_options_on_each(server.requests());
    for (const auto& j : q->list_jobs({})) {
      const std::string json = nlohmann::json(j).dump();
      expect_no_secret(json);
      EXPECT_NE(json.find("\"Authorization: <secret>\""), std::string::npos) << json;
      EXPECT_NE(json.find("\"user_agent\":\"agent/7 (test)\""), std::string::npos) << json;
      std::string appended;
      append_json(appended, j);
      EXPECT_EQ(appended, json);
    }
    for (const auto& e : q->events_since(0, 1000000, std::chrono::milliseconds(0))) expect_no_secret(e.payload);
  }
  SQLite::Database db(dir / "queue.db", SQLite::OPEN_READONLY);
  for (const char* table : {"jobs", "events"}) {
    SQLite::Statement rows(db, std::string("SELECT * FROM ") + table);
    while (rows.executeStep()) {
      for (int c = 0; c < rows.getColumnCount(); ++c) {
        if (!rows.getColumn(c).isNull()) expect_no_secret(rows.getColumn(c).getString());
      }
    }
  }
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM header_secrets").getInt(), 2);
}

TEST(RequestOptions, SecretHeadersAreNotSentAfterARedirectToAnotherHost) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "data";
  server.add("/there", r);
  Resource hop;
  hop.redirect_to = "http://localhost:" + std::to_string(server.port()) + "/there";
  server.add("/hop", hop);
  auto q = open_queue(fast_options(dir));
  auto job = submit(*q, server.url("/hop"), dir / "x.bin", with_headers());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  ASSERT_EQ(q->id_to_job(job.id)->status, JobStatus::kCompleted);
  expect_options_on_each(server.requests_for("/hop"));
  auto there = server.requests_for("/there");
  ASSERT_EQ(there.size(), 1u);
  EXPECT_EQ(there[0].authorization, "");
  EXPECT_EQ(header_of(there[0], "cookie"), "");
  EXPECT_EQ(header_of(there[0], "x-trace"), "trace-1");  // the others go on
  EXPECT_EQ(there[0].user_agent, "agent/7 (test)");
}

TEST(RequestOptions, FetchqdKeepsSecretHeadersOutOfListShowEventsAndItsLog) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "data";
  server.add("/a", r);
  std::filesystem::create_directories(dir / "dl");
  const std::string sock = dir / "d.sock";
  Process d({bin_path("fetchqd"), "--db", dir / "d.db", "--socket", sock, "--log-level", "trace"}, "",
            dir / "d.log");
  ASSERT_TRUE(wait_until(
      [&] { return rpc(sock, R"({"jsonrpc":"2.0","id":1,"method":"stats","params":{}})").find("result") != std::string::npos; },
      std::chrono::seconds(10), std::chrono::milliseconds(20)))
      << whole_file(dir / "d.log");
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), bin_path("fetchq"));
    args.push_back("--socket");
    args.push_back(sock);
    return run_capture(args, dir / "out.txt", dir / "err.txt", std::chrono::seconds(20));
  };
  auto add = cli({"add", server.url("/a"), "-d", dir / "dl", "-H", std::string("Authorization: Bearer ") + kAuthSecret,
                  "--header", std::string("Cookie: sid=") + kCookieSecret, "-H", "X-Trace: trace-1", "--user-agent",
                  "agent/7 (test)", "--json"});
  ASSERT_EQ(add.rc, 0) << add.err;
  expect_no_secret(add.out + add.err);
  const auto id = std::to_string(nlohmann::json::parse(add.out).value("id", 0));
  EXPECT_EQ(cli({"wait", id}).rc, 0);
  expect_options_on_each(server.requests_for("/a"));
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"list", "--json"}, {"list"}, {"show", id, "--json"}, {"show", id}, {"events", "--json"}, {"events"}}) {
    auto res = cli(args);
    EXPECT_EQ(res.rc, 0) << args[0] << ": " << res.err;
    expect_no_secret(res.out + res.err);
    if (args[0] == "show") {
      EXPECT_NE(res.out.find("Authorization: <secret>"), std::string::npos) << res.out;
      EXPECT_NE(res.out.find("X-Trace: trace-1"), std::string::npos) << res.out;
      EXPECT_NE(res.out.find("agent/7 (test)"), std::string::npos) << res.out;
    }
  }
  // Over the socket: a header with a line break is invalid params, its value not repeated.
  nlohmann::json bad{{"jsonrpc", "2.0"},
                     {"id", 2},
                     {"method", "download"},
                     {"params",
                      {{"source", server.url("/a")},
                       {"dest", dir / "dl/b.bin"},
                       {"headers", {std::string("Cookie: x=") + kCookieSecret + "\r\nX-Injected: 1"}}}}};
  auto answer = rpc(sock, bad.dump());
  EXPECT_NE(answer.find("-32602"), std::string::npos) << answer;
  expect_no_secret(answer);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(std::chrono::seconds(20)), 0);
  expect_no_secret(whole_file(dir / "d.log"));
  SQLite::Database db(dir / "d.db", SQLite::OPEN_READONLY);
  expect_no_secret(db.execAndGet("SELECT group_concat(payload, ' ') FROM events").getString());
}

TEST(RequestOptions, MalformedAndEngineOwnedHeadersAreUsageErrors) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "data";
  server.add("/a", r);
  const std::string secret = "v4lue-secret";
  for (const std::string& header : std::vector<std::string>{"Authorization " + secret, ": " + secret, "X Bad: " + secret, "X-Bad: " + secret + "\r\nX-Injected: 1",
        "Cookie: a=" + secret + "\nb=c", "Range: bytes=0-", "If-Range: " + secret, "range: bytes=5-",
        "Accept-Encoding: gzip", "Host: example.org", "User-Agent: x"}) {
    auto res = run_capture({bin_path("fetchq"), "get", server.url("/a"), "-d", dir / "dl", "--state",
                            dir / "state.db", "-H", header},
                           dir / "out.txt", dir / "err.txt", std::chrono::seconds(20));
    EXPECT_EQ(res.rc, 2) << header << ": " << res.err;
    EXPECT_EQ(std::count(res.err.begin(), res.err.end(), '\n'), 1) << res.err;
    EXPECT_NE(res.err.find("header"), std::string::npos) << res.err;
    EXPECT_EQ(res.err.find(secret), std::string::npos) << res.err;
  }
  auto ua = run_capture({bin_path("fetchq"), "get", server.url("/a"), "-d", dir / "dl", "--state", dir / "state.db",
                         "--user-agent", "bad\tagent"},
                        dir / "out.txt", dir / "err.txt", std::chrono::seconds(20));
  EXPECT_EQ(ua.rc, 2) << ua.err;
  EXPECT_TRUE(server.requests().empty());
}

TEST(RequestOptions, APrivateCaIsTrustedWithCaCertAndAnUntrustedCertificateIsATlsError) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(100000, 82);
  server.add("/tls.bin", r);
  TestPki pki = make_test_pki(dir.path());
  TlsFront front(pki.server_cert, pki.server_key, server.port());
  {
    QueueOptions o = fast_options(dir);
    o.ca_cert = pki.ca_cert;
    auto q = open_queue(o);
    auto job = submit(*q, front.url("/tls.bin"), dir / "tls.bin", with_headers());
    ASSERT_TRUE(q->join(std::chrono::seconds(20)));
    auto j = q->id_to_job(job.id);
    ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
    EXPECT_EQ(sha256_file(dir / "tls.bin"), sha256_hex_of(r.body));
    expect_options_on_each(server.requests_for("/tls.bin"));
  }
  {
    QueueOptions o = fast_options(dir);
    o.db_path = dir / "untrusted.db";
    auto q = open_queue(o);
    auto job = submit(*q, front.url("/tls.bin"), dir / "untrusted.bin");
    ASSERT_TRUE(q->join(std::chrono::seconds(20)));
    auto j = q->id_to_job(job.id);
    EXPECT_EQ(j->status, JobStatus::kError);
    EXPECT_EQ(j->error_type, "TLSError") << j->error.value_or("");
    EXPECT_EQ(j->attempts, 1) << "a certificate nobody trusts is not retried";
  }
  // fetchq get: the same with --ca-cert, and a missing file is a usage error before anything.
  auto get = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> argv = {bin_path("fetchq"), "get", front.url("/tls.bin"), "-o", dir / out, "--state",
                                     dir / "get.db", "--quiet"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_capture(argv, dir / "out.txt", dir / "err.txt", std::chrono::seconds(30));
  };
  auto good = get("get.bin", {"--ca-cert", pki.ca_cert});
  EXPECT_EQ(good.rc, 0) << good.err;
  EXPECT_EQ(sha256_file(dir / "get.bin"), sha256_hex_of(r.body));
  auto missing = get("missing.bin", {"--ca-cert", dir / "no-such-ca.pem"});
  EXPECT_EQ(missing.rc, 2) << missing.err;
  EXPECT_NE(missing.err.find("no-such-ca.pem"), std::string::npos) << missing.err;
  auto untrusted = get("untrusted-get.bin", {"--json"});
  EXPECT_EQ(untrusted.rc, 1) << untrusted.err;
  EXPECT_NE(untrusted.out.find("TLSError"), std::string::npos) << untrusted.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "missing.bin"));
  // fetchqd: the ca-cert setting, and a missing file stops it at start.
  const std::string sock = dir / "d.sock";
  auto daemon = [&](const std::string& ca) {
    return std::vector<std::string>{bin_path("fetchqd"), "--db", dir / "d.db", "--socket", sock, "--ca-cert", ca};
  };
  {
    Process bad(daemon(dir / "no-such-ca.pem"), "", dir / "bad.log");
    EXPECT_EQ(bad.wait(std::chrono::seconds(20)), 2);
    EXPECT_NE(whole_file(dir / "bad.log").find("no-such-ca.pem"), std::string::npos) << whole_file(dir / "bad.log");
  }
  Process d(daemon(pki.ca_cert), "", dir / "d.log");
  auto add = [&]() {
    return run_capture({bin_path("fetchq"), "add", front.url("/tls.bin"), "-o", dir / "daemon.bin", "--socket", sock},
                       dir / "out.txt", dir / "err.txt", std::chrono::seconds(20));
  };
  ASSERT_TRUE(wait_until([&] { return add().rc == 0; }, std::chrono::seconds(10), std::chrono::milliseconds(100)))
      << whole_file(dir / "d.log");
  EXPECT_EQ(run_capture({bin_path("fetchq"), "wait", "--socket", sock}, dir / "out.txt", dir / "err.txt",
                        std::chrono::seconds(30))
                .rc,
            0);
  EXPECT_EQ(sha256_file(dir / "daemon.bin"), sha256_hex_of(r.body));
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(std::chrono::seconds(20)), 0);
}

// A forward proxy: the second server answers requests for `path` by asking the origin itself,
// and logs them like any request (an absolute-form target is logged as sent, its path as path).
void add_proxy_route(TestServer& proxy, const TestServer& origin, const std::string& path) {
  proxy.set_handler(path, [port = origin.port(), path](const RequestLog& req, int fd) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(s);
      return;
    }
    std::string head = req.method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                       "\r\nConnection: close\r\n";
    for (const auto& [name, value] : req.headers) {
      if (name != "host" && name != "connection" && name != "proxy-connection" && name != "proxy-authorization") {
        head += name + ": " + value + "\r\n";
      }
    }
    send_all(s, head + "\r\n");
    char buf[16384];
    for (ssize_t n; (n = ::recv(s, buf, sizeof buf, 0)) > 0;) {
      if (!send_all(fd, std::string(buf, static_cast<size_t>(n)))) break;
    }
    ::close(s);
  });
}

TEST(RequestOptions, AProxyCarriesTheRequestsFromTheSettingOrTheEnvironment) {
  TempDir dir;
  TestServer origin;
  TestServer proxy;
  Resource r;
  r.body = make_body(50000, 83);
  origin.add("/p.bin", r);
  add_proxy_route(proxy, origin, "/p.bin");
  const std::string proxy_url = "http://127.0.0.1:" + std::to_string(proxy.port());
  {
    // In a library queue, with credentials: they reach the proxy and nothing else shows them.
    QueueOptions o = fast_options(dir);
    o.proxy = "http://puser:proxy-secret@127.0.0.1:" + std::to_string(proxy.port());
    auto q = open_queue(o);
    auto job = submit(*q, origin.url("/p.bin"), dir / "lib.bin", with_headers());
    ASSERT_TRUE(q->join(std::chrono::seconds(20)));
    auto j = q->id_to_job(job.id);
    ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
    EXPECT_EQ(sha256_file(dir / "lib.bin"), sha256_hex_of(r.body));
    auto via = proxy.requests_for("/p.bin");
    ASSERT_EQ(via.size(), 1u);
    EXPECT_EQ(via[0].target, origin.url("/p.bin")) << "not an absolute-form request";
    EXPECT_EQ(header_of(via[0], "proxy-authorization").rfind("Basic ", 0), 0u);
    expect_options_on_each(origin.requests_for("/p.bin"));
    for (const auto& e : q->events_since(0, 1000000, std::chrono::milliseconds(0))) {
      EXPECT_EQ(e.payload.find("proxy-secret"), std::string::npos) << e.payload;
    }
  }
  // fetchq get --proxy, then the http_proxy variable alone.
  const std::vector<std::string> no_env_proxy = {"http_proxy=", "HTTP_PROXY=", "ALL_PROXY=", "all_proxy=",
                                                  "no_proxy=", "NO_PROXY="};
  auto get = [&](const std::string& out, std::vector<std::string> extra, std::vector<std::string> env) {
    std::vector<std::string> argv = {bin_path("fetchq"), "get", origin.url("/p.bin"), "-o", dir / out,
                                     "--state", dir / "get.db", "--quiet"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Process p(argv, dir / "out.txt", dir / "err.txt", env);
    return p.wait(std::chrono::seconds(30));
  };
  proxy.reset_log();
  EXPECT_EQ(get("flag.bin", {"--proxy", proxy_url}, no_env_proxy), 0) << whole_file(dir / "err.txt");
  ASSERT_EQ(proxy.requests().size(), 1u);
  EXPECT_EQ(proxy.requests()[0].target, origin.url("/p.bin"));
  proxy.reset_log();
  auto env = no_env_proxy;
  env.push_back("http_proxy=" + proxy_url);
  EXPECT_EQ(get("env.bin", {}, env), 0) << whole_file(dir / "err.txt");
  ASSERT_EQ(proxy.requests().size(), 1u);
  EXPECT_EQ(proxy.requests()[0].target, origin.url("/p.bin"));
  EXPECT_EQ(sha256_file(dir / "env.bin"), sha256_hex_of(r.body));
  // fetchqd: the proxy setting of a config file, with credentials its log never shows.
  proxy.reset_log();
  {
    std::ofstream cfg(dir / "fetchqd.conf");
    cfg << "proxy = http://duser:daemon-proxy-secret@127.0.0.1:" << proxy.port() << "\n";
  }
  const std::string sock = dir / "d.sock";
  Process d({bin_path("fetchqd"), "--config", dir / "fetchqd.conf", "--db", dir / "d.db", "--socket", sock,
             "--log-level", "trace"},
            "", dir / "d.log", no_env_proxy);
  auto add = [&]() {
    return run_capture({bin_path("fetchq"), "add", origin.url("/p.bin"), "-o", dir / "daemon.bin", "--socket", sock},
                       dir / "out.txt", dir / "err.txt", std::chrono::seconds(20));
  };
  ASSERT_TRUE(wait_until([&] { return add().rc == 0; }, std::chrono::seconds(10), std::chrono::milliseconds(100)))
      << whole_file(dir / "d.log");
  EXPECT_EQ(run_capture({bin_path("fetchq"), "wait", "--socket", sock}, dir / "out.txt", dir / "err.txt",
                        std::chrono::seconds(30))
                .rc,
            0);
  ASSERT_EQ(proxy.requests().size(), 1u);
  EXPECT_EQ(proxy.requests()[0].target, origin.url("/p.bin"));
  EXPECT_EQ(sha256_file(dir / "daemon.bin"), sha256_hex_of(r.body));
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(std::chrono::seconds(20)), 0);
  EXPECT_EQ(whole_file(dir / "d.log").find("daemon-proxy-secret"), std::string::npos) << whole_file(dir / "d.log");
  auto bad = run_capture({bin_path("fetchq"), "get", origin.url("/p.bin"), "-o", dir / "x.bin", "--state",
                          dir / "get.db", "--proxy", "gopher://u:pw-secret@127.0.0.1:1"},
                         dir / "out.txt", dir / "err.txt", std::chrono::seconds(20));
  EXPECT_EQ(bad.rc, 2) << bad.err;
  EXPECT_EQ(bad.err.find("pw-secret"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace fetchq::testing
