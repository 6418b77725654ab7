// Secrets stay secret: tokens and URL passwords go where they should, and nowhere else (not to
// plain http, not into listings, events, errors or the log); misleading errors are named.
//
// https comes from a TLS front (support/tls_front.h) before the plain test server.
#include <SQLiteCpp/SQLiteCpp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "integration/helpers.h"
#include "support/process.h"
#include "support/tls_front.h"

namespace fetchq::testing {
namespace {

std::string base64(const std::string& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

std::string whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return;
    off += static_cast<size_t>(w);
  }
}

std::string port_of(const TestServer& s) { return std::to_string(s.port()); }

TEST(Secrets, RuleTokensGoToPlainHttpOnlyWhenTheRuleNamesSchemeHostAndPort) {
  TempDir dir;
  TestServer server;
  TestServer other;
  Resource r;
  r.body = "data";
  for (auto* s : {&server, &other}) {
    s->add("/a", r);
    s->add("/b", r);
  }
  auto o = fast_options(dir);
  // A bare host applies to https only; the explicit http rule names the first server's port.
  o.token_rules = {{"localhost", "bare-token"},
                   {"http://127.0.0.1:" + port_of(server), "http-token"}};
  auto q = open_queue(o);
  auto a = submit(*q, "http://localhost:" + port_of(server) + "/a", dir / "a.bin");
  auto b = submit(*q, server.url("/b"), dir / "b.bin");
  auto c = submit(*q, other.url("/a"), dir / "c.bin");  // same host, another port
  EXPECT_FALSE(a.has_access_token);
  EXPECT_TRUE(b.has_access_token);
  EXPECT_FALSE(c.has_access_token);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(server.requests_for("/a").at(0).authorization, "");
  EXPECT_EQ(server.requests_for("/b").at(0).authorization, "Bearer http-token");
  EXPECT_EQ(other.requests_for("/a").at(0).authorization, "");
}

TEST(Secrets, ATokenWithCrOrLfIsRefusedAtSubmission) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "data";
  server.add("/a", r);
  auto q = open_queue(fast_options(dir));
  for (std::string bad : {"abc\r\nX-Injected: 1", "abc\nX-Injected: 1", "abc\rdef"}) {
    DownloadOptions opts;
    opts.access_token = bad;
    auto res = q->download({server.url("/a"), dir / "a.bin", opts});
    ASSERT_FALSE(res.ok());
    EXPECT_EQ(res.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(res.error().message.find("X-Injected"), std::string::npos) << res.error().message;
  }
  EXPECT_TRUE(q->list_jobs({}).empty());
  EXPECT_TRUE(server.requests().empty());

  // fetchq get --token-env: exit 2 and one line, without the token.
  ::setenv("FETCHQ_TEST_BAD_TOKEN", "abc\r\nX-Injected: 1", 1);
  auto res = run_capture({bin_path("fetchq"), "get", server.url("/a"), "-d", dir / "dl", "--state",
                          dir / "state.db", "--token-env", "FETCHQ_TEST_BAD_TOKEN"},
                         dir / "out.txt", dir / "err.txt", std::chrono::seconds(30));
  ::unsetenv("FETCHQ_TEST_BAD_TOKEN");
  EXPECT_EQ(res.rc, 2) << res.err;
  EXPECT_EQ(std::count(res.err.begin(), res.err.end(), '\n'), 1) << res.err;
  EXPECT_EQ(res.err.find("X-Injected"), std::string::npos) << res.err;
  EXPECT_TRUE(server.requests().empty());
}

TEST(Secrets, AUrlPasswordIsSentAsBasicAuthAndShownNowhere) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "data";
  server.add("/ok", r);
  Resource missing;
  missing.status = 404;
  server.add("/missing", missing);
  const std::string secret = "s3cr3t-pw";
  auto url = [&](const std::string& path) {
    return "http://alice:" + secret + "@127.0.0.1:" + port_of(server) + path;
  };
  {
    auto q = open_queue(fast_options(dir));
    auto ok = submit(*q, url("/ok"), dir / "ok.bin");
    auto bad = submit(*q, url("/missing"), dir / "missing.bin");
    EXPECT_EQ(ok.source, "http://alice:***@127.0.0.1:" + port_of(server) + "/ok");
    ASSERT_TRUE(q->join(std::chrono::seconds(20)));
    EXPECT_EQ(server.requests_for("/ok").at(0).authorization, "Basic " + base64("alice:" + secret));
    auto failed = q->id_to_job(bad.id);
    ASSERT_TRUE(failed);
    EXPECT_EQ(failed->status, JobStatus::kError);
    ASSERT_TRUE(failed->error);
    EXPECT_NE(failed->error->find("/missing"), std::string::npos) << *failed->error;
    for (const auto& j : q->list_jobs({})) {
      const std::string shown = nlohmann::json(j).dump();
      EXPECT_EQ(shown.find(secret), std::string::npos) << shown;
    }
    for (const auto& e : q->events_since(0, 1000000, std::chrono::milliseconds(0))) {
      EXPECT_EQ(e.payload.find(secret), std::string::npos) << e.payload;
    }
  }
  // Only the secrets table holds it: not the jobs, not the events.
  SQLite::Database db(dir / "queue.db", SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM jobs WHERE instr(source, '" + secret +
                          "') > 0 OR "
                          "instr(COALESCE(error, ''), '" +
                          secret + "') > 0")
                .getInt(),
            0);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM events WHERE instr(payload, '" + secret + "') > 0")
                .getInt(),
            0);
}

TEST(Secrets, AUrlPasswordIsNotSentAfterARedirectToAnotherHost) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "data";
  server.add("/there", r);
  Resource hop;
  hop.redirect_to = "http://localhost:" + port_of(server) + "/there";
  server.add("/hop", hop);
  auto q = open_queue(fast_options(dir));
  submit(*q, "http://bob:pw123@127.0.0.1:" + port_of(server) + "/hop", dir / "x.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(server.requests_for("/hop").at(0).authorization, "Basic " + base64("bob:pw123"));
  ASSERT_EQ(server.requests_for("/there").size(), 1u);
  EXPECT_EQ(server.requests_for("/there").at(0).authorization, "");
}

// A job that started on https and is redirected to plain http (same host, another port): a job
// token is never sent in clear; the redirect is refused and named (not libcurl's "Protocol not
// supported"). A secret header or a URL password is left off the plain request by libcurl, as
// for another host, and the download goes on.
TEST(Secrets, AnHttpsToHttpRedirectNeverCarriesASecretInClearText) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(50000, 7);
  server.add("/plain.bin", r);
  Resource hop;
  hop.redirect_to = server.url("/plain.bin");
  server.add("/hop", hop);
  TestPki pki = make_test_pki(dir.path());
  TlsFront front(pki.server_cert, pki.server_key, server.port());
  const std::string secure_hop = front.url("/hop");
  ASSERT_EQ(secure_hop.rfind("https://127.0.0.1:", 0), 0u) << secure_hop;
  QueueOptions o = fast_options(dir);
  o.ca_cert = pki.ca_cert;
  auto q = open_queue(o);

  DownloadOptions with_token;
  with_token.access_token = "tok-https-only";
  auto token_job = submit(*q, secure_hop, dir / "token.bin", with_token);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(token_job.id);
  ASSERT_TRUE(j && j->error);
  EXPECT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type, "InsecureRedirect") << *j->error;
  EXPECT_NE(j->error->find(server.url("/plain.bin")), std::string::npos) << *j->error;
  EXPECT_NE(j->error->find("plain http"), std::string::npos) << *j->error;
  EXPECT_EQ(j->error->find("tok-https-only"), std::string::npos) << *j->error;
  EXPECT_EQ(j->attempts, 1) << "the same redirect would come again";
  EXPECT_TRUE(server.requests_for("/plain.bin").empty()) << "nothing was asked over plain http";
  ASSERT_FALSE(server.requests_for("/hop").empty());
  EXPECT_EQ(server.requests_for("/hop").at(0).authorization, "Bearer tok-https-only");
  EXPECT_FALSE(std::filesystem::exists(dir / "token.bin"));

  DownloadOptions with_header;
  with_header.headers = {{"Authorization", "Bearer hdr-https-only"}};
  auto header_job = submit(*q, secure_hop, dir / "header.bin", with_header);
  auto password_job =
      submit(*q, "https://dave:pw-https-only@" + secure_hop.substr(std::string("https://").size()),
             dir / "password.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  for (int64_t id : {header_job.id, password_job.id}) {
    auto done = q->id_to_job(id);
    ASSERT_TRUE(done);
    EXPECT_EQ(done->status, JobStatus::kCompleted) << done->error.value_or("");
  }
  EXPECT_EQ(sha256_file(dir / "header.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(sha256_file(dir / "password.bin"), sha256_hex_of(r.body));
  auto hops = server.requests_for("/hop");
  ASSERT_EQ(hops.size(), 3u);
  std::multiset<std::string> secure_auth;  // the two jobs run at once: in either order
  for (size_t i = 1; i < hops.size(); ++i) secure_auth.insert(hops[i].authorization);
  EXPECT_EQ(secure_auth, (std::multiset<std::string>{"Basic " + base64("dave:pw-https-only"),
                                                    "Bearer hdr-https-only"}))
      << "both secrets went to the https URL";
  auto plain = server.requests_for("/plain.bin");
  ASSERT_EQ(plain.size(), 2u);
  for (const auto& rq : plain) EXPECT_EQ(rq.authorization, "") << "a secret went over plain http";
}

TEST(Secrets, FetchqGetNeverPrintsTheUrlPassword) {
  TempDir dir;
  TestServer server;
  Resource missing;
  missing.status = 404;
  server.add("/missing", missing);
  const std::string secret = "pw-for-get";
  auto res = run_capture({bin_path("fetchq"), "get",
                          "http://carol:" + secret + "@127.0.0.1:" + port_of(server) + "/missing",
                          "-d", dir / "dl", "--state", dir / "state.db", "--json"},
                         dir / "out.txt", dir / "err.txt", std::chrono::seconds(30));
  EXPECT_EQ(res.rc, 1) << res.err;
  EXPECT_NE(res.out.find("carol:***@"), std::string::npos) << res.out;
  EXPECT_EQ(res.out.find(secret), std::string::npos) << res.out;
  EXPECT_EQ(res.err.find(secret), std::string::npos) << res.err;
  EXPECT_EQ(whole_file(dir / "state.db").find("HTTP/"), std::string::npos);  // sanity: a database
}

TEST(Secrets, AnHttpErrorAfterARedirectNamesTheFinalUrl) {
  TempDir dir;
  TestServer server;
  Resource missing;
  missing.status = 404;
  server.add("/gone", missing);
  Resource hop;
  hop.redirect_to = server.url("/gone");
  server.add("/start", hop);
  auto q = open_queue(fast_options(dir));
  auto job = submit(*q, server.url("/start"), dir / "x.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  ASSERT_TRUE(j && j->error);
  EXPECT_NE(j->error->find(server.url("/start")), std::string::npos) << *j->error;
  EXPECT_NE(j->error->find(server.url("/gone")), std::string::npos) << *j->error;
}

// A header line over libcurl's 100 KB, a header block over 300 KB in lines of 1 KB, and one of
// about 275 KB (under libcurl's 300 KB, so only fetchq's own 256 KiB limit refuses it): named
// HeaderTooLarge with the URL, and not retried.
TEST(Secrets, HugeResponseHeadersAreNamedAndNotRetried) {
  TempDir dir;
  TestServer server;
  server.set_handler("/line", [](const RequestLog&, int fd) {
    send_all(fd, "HTTP/1.1 200 OK\r\nX-Big: " + std::string(100 * 1024, 'a') +
                     "\r\nContent-Length: 4\r\n\r\ndata");
  });
  server.set_handler("/block", [](const RequestLog&, int fd) {
    std::string h = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 300; ++i)
      h += "X-H" + std::to_string(i) + ": " + std::string(1024, 'b') + "\r\n";
    send_all(fd, h + "Content-Length: 4\r\n\r\ndata");
  });
  server.set_handler("/mid", [](const RequestLog&, int fd) {
    std::string h = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 270; ++i)
      h += "X-H" + std::to_string(i) + ": " + std::string(1024, 'c') + "\r\n";
    send_all(fd, h + "Content-Length: 4\r\n\r\ndata");
  });
  auto q = open_queue(fast_options(dir));
  auto line = submit(*q, server.url("/line"), dir / "line.bin");
  auto block = submit(*q, server.url("/block"), dir / "block.bin");
  auto mid = submit(*q, server.url("/mid"), dir / "mid.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  for (auto [id, path] :
       {std::pair{line.id, "/line"}, std::pair{block.id, "/block"}, std::pair{mid.id, "/mid"}}) {
    SCOPED_TRACE(path);
    auto j = q->id_to_job(id);
    ASSERT_TRUE(j);
    EXPECT_EQ(j->status, JobStatus::kError);
    EXPECT_EQ(j->error_type.value_or(""), "HeaderTooLarge") << j->error.value_or("");
    EXPECT_NE(j->error.value_or("").find(server.url(path)), std::string::npos)
        << j->error.value_or("");
    EXPECT_NE(j->error.value_or("").find("header"), std::string::npos) << j->error.value_or("");
    EXPECT_EQ(j->attempts, 1);
    EXPECT_EQ(server.requests_for(path).size(), 1u);
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "mid.bin"));
}

// libcurl (7.88) refuses a response whose headers hold a NUL before fetchq sees any header, so
// the name cannot fall back to the URL's (file_name_test shows it would): the job fails once,
// with an error that says so, instead of an unnamed TransferError retried again and again.
TEST(Secrets, ANulInAResponseHeaderIsNamedAndNotRetried) {
  TempDir dir;
  TestServer server;
  server.set_handler("/name.txt", [](const RequestLog&, int fd) {
    send_all(fd, std::string(
                     "HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename=\"a\0b.txt\"\r\n"
                     "Content-Length: 4\r\nConnection: close\r\n\r\ndata",
                     114));
  });
  auto q = open_queue(fast_options(dir));
  std::filesystem::create_directories(dir / "dl");
  auto job = submit(*q, server.url("/name.txt"), dir / "dl/");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type.value_or(""), "BadResponseHeader") << j->error.value_or("");
  EXPECT_NE(j->error.value_or("").find(server.url("/name.txt")), std::string::npos);
  EXPECT_EQ(j->attempts, 1);
}

// ---- through fetchqd: the config's token rules, the socket's answers, the command line

std::string rpc(const std::string& sock, const std::string& request) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  std::string line;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    send_all(fd, request + "\n");
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) break;
      char c;
      if (::recv(fd, &c, 1, 0) <= 0 || c == '\n') break;
      line.push_back(c);
    }
  }
  ::close(fd);
  return line;
}

TEST(Secrets, FetchqdRuleTokensAvoidPlainHttpAndBadTokensAreInvalidParams) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "data";
  server.add("/a", r);
  server.add("/b", r);
  std::filesystem::create_directories(dir / "dl");
  ::setenv("FETCHQ_TEST_RULE_TOKEN", "rule-token", 1);
  {
    std::ofstream cfg(dir / "bad.conf");
    cfg << "token-rule = http://localhost env:FETCHQ_TEST_RULE_TOKEN\n";  // http without a port
  }
  {
    std::ofstream cfg(dir / "fetchqd.conf");
    cfg << "token-rule = localhost env:FETCHQ_TEST_RULE_TOKEN\n"
        << "token-rule = http://127.0.0.1:" << port_of(server) << " env:FETCHQ_TEST_RULE_TOKEN\n";
  }
  const std::string sock = dir / "d.sock";
  auto argv = [&](const std::string& conf) {
    return std::vector<std::string>{bin_path("fetchqd"), "--config", dir / conf, "--db",
                                    dir / "d.db",        "--socket", sock,       "--download-root",
                                    dir.path()};
  };
  {
    Process bad(argv("bad.conf"), "", dir / "bad.err");
    EXPECT_EQ(bad.wait(std::chrono::seconds(20)), 2);
    EXPECT_NE(whole_file(dir / "bad.err").find("http://localhost"), std::string::npos)
        << whole_file(dir / "bad.err");
  }
  Process d(argv("fetchqd.conf"), "", dir / "d.err");
  ::unsetenv("FETCHQ_TEST_RULE_TOKEN");
  ASSERT_TRUE(wait_until(
      [&] {
        return rpc(sock, R"({"jsonrpc":"2.0","id":1,"method":"stats","params":{}})")
                   .find("result") != std::string::npos;
      },
      std::chrono::seconds(10), std::chrono::milliseconds(20)))
      << whole_file(dir / "d.err");
  auto submit_rpc = [&](const std::string& url, const std::string& dest,
                        const std::string& extra = "") {
    nlohmann::json req{{"jsonrpc", "2.0"},
                       {"id", 2},
                       {"method", "download"},
                       {"params", {{"source", url}, {"dest", dest}}}};
    if (!extra.empty()) req["params"]["access_token"] = extra;
    return nlohmann::json::parse(rpc(sock, req.dump()), nullptr, false);
  };
  auto a = submit_rpc("http://localhost:" + port_of(server) + "/a", dir / "dl/a.bin");
  auto b = submit_rpc(server.url("/b"), dir / "dl/b.bin");
  ASSERT_TRUE(a.contains("result")) << a.dump();
  ASSERT_TRUE(b.contains("result")) << b.dump();
  EXPECT_FALSE(a["result"].value("has_access_token", true));
  EXPECT_TRUE(b["result"].value("has_access_token", false));
  auto bad = submit_rpc(server.url("/a"), dir / "dl/c.bin", "tok\r\nX-Injected: 1");
  EXPECT_EQ(bad["error"].value("code", 0), -32602) << bad.dump();
  EXPECT_EQ(bad.dump().find("X-Injected"), std::string::npos) << bad.dump();
  // fetchq add --token-env: a usage error (exit 2), one line, nothing sent.
  ::setenv("FETCHQ_TEST_BAD_TOKEN", "tok\nX-Injected: 1", 1);
  auto add = run_capture({bin_path("fetchq"), "add", server.url("/a"), "-d", dir / "dl",
                          "--token-env", "FETCHQ_TEST_BAD_TOKEN", "--socket", sock},
                         dir / "add.out", dir / "add.err", std::chrono::seconds(20));
  ::unsetenv("FETCHQ_TEST_BAD_TOKEN");
  EXPECT_EQ(add.rc, 2) << add.err;
  EXPECT_EQ(std::count(add.err.begin(), add.err.end(), '\n'), 1) << add.err;
  ASSERT_TRUE(wait_until(
      [&] { return server.requests_for("/a").size() + server.requests_for("/b").size() >= 2; }));
  EXPECT_EQ(server.requests_for("/a").size(), 1u);
  EXPECT_EQ(server.requests_for("/a").at(0).authorization, "");
  EXPECT_EQ(server.requests_for("/b").at(0).authorization, "Bearer rule-token");
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(std::chrono::seconds(20)), 0);
}

}  // namespace
}  // namespace fetchq::testing
