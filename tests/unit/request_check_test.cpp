// Submission checks: schemes, destinations and the download roots.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "queue/request_check.h"
#include "support/temp_dir.h"

namespace fetchq::queue {
namespace {

using fetchq::testing::TempDir;

TEST(RequestCheck, OnlyHttpAndHttpsUrls) {
  EXPECT_TRUE(check_source_url("http://example.org/a").ok());
  EXPECT_TRUE(check_source_url("HTTPS://example.org/a?b=c").ok());
  for (const char* bad : {"file:///etc/passwd", "ftp://example.org/a", "gopher://example.org/",
                          "not a url", "", "http://", "javascript:alert(1)", "http://exa mple.org/"}) {
    auto st = check_source_url(bad);
    EXPECT_FALSE(st.ok()) << bad;
  }
  EXPECT_EQ(check_source_url("ftp://example.org/a").error().code, ErrorCode::kSchemeNotAllowed);
}

TEST(RequestCheck, DestinationMustBeAbsolute) {
  DownloadRequest r{"http://h/a", "relative/path", {}};
  auto nj = check_request(r, {});
  ASSERT_FALSE(nj.ok());
  EXPECT_EQ(nj.error().code, ErrorCode::kInvalidArgument);
}

TEST(RequestCheck, FolderOrFile) {
  TempDir dir;
  auto a = check_request({"http://h/a", dir.path(), {}}, {});
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->dest_is_dir);
  auto b = check_request({"http://h/a", dir / "new/", {}}, {});
  EXPECT_TRUE(b->dest_is_dir);
  auto c = check_request({"http://h/a", dir / "file.bin", {}}, {});
  EXPECT_FALSE(c->dest_is_dir);
  EXPECT_EQ(c->download_path.value_or(""), dir / "file.bin");
}

TEST(RequestCheck, ABatchAsksTheFileSystemOncePerDestination) {
  TempDir dir;
  std::filesystem::create_directories(dir / "root");
  std::vector<std::string> roots{dir / "root"};
  DestCache cache;
  std::string later_dir = dir / "root/later";
  auto first = check_request({"http://h/a", later_dir, {}}, roots, &cache);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->dest_is_dir);  // nothing there yet: a file name
  ASSERT_EQ(cache.size(), 1u);
  std::filesystem::create_directories(later_dir);
  // Within the batch the first answer stands; a new batch (no cache) looks again.
  auto second = check_request({"http://h/b", later_dir, {}}, roots, &cache);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->dest_is_dir);
  EXPECT_TRUE(check_request({"http://h/c", later_dir, {}}, roots)->dest_is_dir);
  // A refused destination stays refused for the rest of the batch, with the same error.
  std::string outside = dir / "elsewhere/x";
  for (int i = 0; i < 2; ++i) {
    auto r = check_request({"http://h/d", outside, {}}, roots, &cache);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kOutsideRoots);
  }
  EXPECT_EQ(cache.size(), 2u);
}

TEST(RequestCheck, DownloadRootsConfineDestinations) {
  TempDir dir;
  std::filesystem::create_directories(dir / "root/sub");
  std::filesystem::create_directories(dir / "outside");
  ASSERT_EQ(::symlink((dir / "outside").c_str(), (dir / "root/link").c_str()), 0);
  std::vector<std::string> roots{dir / "root"};
  EXPECT_TRUE(is_under_roots(dir / "root/sub/file", roots));
  EXPECT_TRUE(is_under_roots(dir / "root/new/deeper/file", roots));
  EXPECT_TRUE(is_under_roots(dir / "root", roots));
  EXPECT_FALSE(is_under_roots(dir / "root/../outside/file", roots));
  EXPECT_FALSE(is_under_roots(dir / "root/link/file", roots));   // symbolic link escape
  EXPECT_FALSE(is_under_roots(dir / "root/new/../../outside", roots));
  EXPECT_FALSE(is_under_roots(dir / "rootx/file", roots));
  EXPECT_FALSE(is_under_roots("/etc/passwd", roots));
  auto nj = check_request({"http://h/a", dir / "outside/x", {}}, roots);
  ASSERT_FALSE(nj.ok());
  EXPECT_EQ(nj.error().code, ErrorCode::kOutsideRoots);
}

TEST(RequestCheck, Sha256MustBeHex) {
  TempDir dir;
  DownloadOptions o;
  o.sha256 = "xyz";
  EXPECT_FALSE(check_request({"http://h/a", dir.path(), o}, {}).ok());
  o.sha256 = std::string(64, 'A');
  auto nj = check_request({"http://h/a", dir.path(), o}, {});
  ASSERT_TRUE(nj.ok());
  EXPECT_EQ(*nj->request.options.sha256, std::string(64, 'a'));
}

}  // namespace
}  // namespace fetchq::queue

namespace fetchq::queue {
namespace {

TEST(TokenRules, MatchTheHostOnly) {
  EXPECT_EQ(url_host("https://Huggingface.CO/x?y=1").value_or(""), "huggingface.co");
  EXPECT_EQ(url_host("http://example.org./a").value_or(""), "example.org");
  EXPECT_TRUE(host_matches("huggingface.co", "huggingface.co"));
  EXPECT_TRUE(host_matches("cdn.huggingface.co", "*.huggingface.co"));
  EXPECT_FALSE(host_matches("huggingface.co", "*.huggingface.co"));
  EXPECT_FALSE(host_matches("evilhuggingface.co", "*.huggingface.co"));
  EXPECT_FALSE(host_matches("huggingface.co.evil.net", "huggingface.co"));
  // A query string or path naming the host does not make the URL match.
  EXPECT_FALSE(host_matches(url_host("http://evil.net/huggingface.co?h=huggingface.co").value_or(""),
                            "huggingface.co"));
  EXPECT_FALSE(host_matches(url_host("http://huggingface.co@evil.net/").value_or(""), "huggingface.co"));
}

}  // namespace
}  // namespace fetchq::queue

namespace fetchq::queue {
namespace {

// Found by fuzz_url_check: libcurl forgives a missing slash; fetchq does not.
TEST(TokenRules, BareHostsApplyToHttpsOnly) {
  EXPECT_TRUE(token_rule_applies("example.org", "https://example.org/a"));
  EXPECT_TRUE(token_rule_applies("example.org", "HTTPS://Example.ORG./a"));
  EXPECT_FALSE(token_rule_applies("example.org", "http://example.org/a"));
  EXPECT_FALSE(token_rule_applies("localhost", "http://localhost:39080/a"));
  EXPECT_TRUE(token_rule_applies("*.example.org", "https://cdn.example.org:8443/a"));
  EXPECT_FALSE(token_rule_applies("*.example.org", "http://cdn.example.org/a"));
  EXPECT_FALSE(token_rule_applies("example.org", "https://example.org@evil.net/"));
}

TEST(TokenRules, AUrlPatternMeansThatSchemeHostAndPort) {
  EXPECT_TRUE(token_rule_applies("http://localhost:39080", "http://localhost:39080/a"));
  EXPECT_FALSE(token_rule_applies("http://localhost:39080", "http://localhost:39081/a"));
  EXPECT_FALSE(token_rule_applies("http://localhost:39080", "https://localhost:39080/a"));
  EXPECT_FALSE(token_rule_applies("http://localhost:39080", "http://127.0.0.1:39080/a"));
  EXPECT_TRUE(token_rule_applies("https://example.org", "https://example.org/a"));
  EXPECT_TRUE(token_rule_applies("https://example.org", "https://example.org:443/a"));
  EXPECT_FALSE(token_rule_applies("https://example.org", "https://example.org:8443/a"));
  EXPECT_FALSE(token_rule_applies("https://example.org", "http://example.org/a"));
  EXPECT_TRUE(token_rule_applies("https://example.org:8443", "https://example.org:8443/x"));
}

TEST(TokenRules, PatternsAreCheckedWhenLoaded) {
  for (const char* ok :
       {"example.org", "*.example.org", "https://example.org", "https://example.org:8443",
        "http://localhost:39080", "http://localhost:39080/"}) {
    EXPECT_TRUE(check_token_rule_pattern(ok).ok()) << ok;
  }
  for (const char* bad :
       {"", "http://localhost", "http://example.org/", "ftp://example.org:21", "example.org:443",
        "example.org/path", "https://example.org/path", "https://u@example.org",
        "https://example.org/?q", "a*.example.org", "*.*.example.org", "exa mple.org"}) {
    auto st = check_token_rule_pattern(bad);
    EXPECT_FALSE(st.ok()) << bad;
    if (!st.ok()) {
      EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
    }
  }
}

TEST(RequestCheck, ATokenWithControlCharactersIsRefused) {
  TempDir dir;
  for (const std::string& bad : std::vector<std::string>{"t\r\nX-Evil: 1", "t\nX", "t\rX",
                                                         std::string("t\0X", 3), "t\x7f", ""}) {
    DownloadOptions o;
    o.access_token = bad;
    auto nj = check_request({"https://h/a", dir / "a", o}, {});
    ASSERT_FALSE(nj.ok());
    EXPECT_EQ(nj.error().code, ErrorCode::kInvalidArgument);
    if (!bad.empty()) {
      EXPECT_EQ(nj.error().message.find(bad), std::string::npos);
    }
  }
  DownloadOptions good;
  good.access_token = "abc.DEF-123_~+/=";
  EXPECT_TRUE(check_request({"https://h/a", dir / "a", good}, {}).ok());
}

TEST(UrlPassword, SplitOutAtSubmissionAndShownAsStars) {
  TempDir dir;
  auto nj = check_request({"https://alice:s%40cret@example.org/p?q=1", dir / "a", {}}, {});
  ASSERT_TRUE(nj.ok());
  EXPECT_EQ(nj->request.source, "https://alice:***@example.org/p?q=1");
  EXPECT_EQ(nj->url_password.value_or(""), "s@cret");  // decoded, as it is sent
  // A user name alone is no secret; an empty password neither.
  auto user = check_request({"https://alice@example.org/p", dir / "a", {}}, {});
  EXPECT_EQ(user->request.source, "https://alice@example.org/p");
  EXPECT_FALSE(user->url_password);
  auto empty = check_request({"https://alice:@example.org/p", dir / "a", {}}, {});
  EXPECT_FALSE(empty->url_password);
  auto none = check_request({"https://example.org/a@b", dir / "a", {}}, {});
  EXPECT_EQ(none->request.source, "https://example.org/a@b");
  EXPECT_FALSE(none->url_password);
}

TEST(UrlPassword, TheTransferGetsTheUrlWithoutUserInfo) {
  auto t = transfer_url("https://alice:***@example.org:8443/p?q=1", std::string("s@cret"));
  EXPECT_EQ(t.url, "https://example.org:8443/p?q=1");
  EXPECT_EQ(t.user, "alice");
  EXPECT_EQ(t.password.value_or(""), "s@cret");
  auto plain = transfer_url("https://bob@example.org/p", std::nullopt);
  EXPECT_EQ(plain.url, "https://bob@example.org/p");
  EXPECT_FALSE(plain.password);
}

TEST(UrlPassword, MessagesNeverHoldIt) {
  EXPECT_EQ(redact_url("https://u:pw@h/x"), "https://u:***@h/x");
  EXPECT_EQ(redact_url("https://u:p:w@x@h/x"), "https://u:***@h/x");  // up to the last '@'
  EXPECT_EQ(redact_url("https://h/u:pw@x"), "https://h/u:pw@x");      // not the authority
  EXPECT_EQ(redact_url("not a url u:pw@h"), "not a url u:pw@h");
  for (const char* bad : {"ftp://u:pw-secret@h/x", "https://u:pw-secret@/x",
                          "http://u:pw-secret@h/a b", "https://u:pw-secret@h:99999999/x"}) {
    auto st = check_source_url(bad);
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.error().message.find("pw-secret"), std::string::npos) << st.error().message;
  }
}

TEST(RequestCheck, AFileNameTooLongForItsPartFileIsRefusedAtOnce) {
  TempDir dir;
  const long name_max = ::pathconf(dir.path().c_str(), _PC_NAME_MAX);
  ASSERT_GT(name_max, 10);
  const std::string fits(static_cast<size_t>(name_max) - 5, 'a');  // + ".part" is name_max
  EXPECT_TRUE(check_request({"https://h/a", dir / fits, {}}, {}).ok());
  for (size_t n : {static_cast<size_t>(name_max) - 4, static_cast<size_t>(name_max) - 2}) {
    // Also in a folder that does not exist yet.
    for (const std::string& d : {dir.path(), std::string(dir / "new/sub")}) {
      auto nj = check_request({"https://h/a", d + "/" + std::string(n, 'b'), {}}, {});
      ASSERT_FALSE(nj.ok()) << n;
      EXPECT_EQ(nj.error().code, ErrorCode::kInvalidArgument);
      EXPECT_NE(nj.error().message.find("too long"), std::string::npos) << nj.error().message;
    }
  }
}

TEST(FuzzRegressions, UrlsNeedSchemeSlashSlashHost) {
  EXPECT_FALSE(check_source_url("http:/example.org/a").ok());
  EXPECT_FALSE(check_source_url("http:///example.org/a").ok());
  EXPECT_FALSE(check_source_url("http:example.org").ok());
  EXPECT_FALSE(check_source_url("http:/ttp://example.org/a").ok());
  EXPECT_TRUE(check_source_url("http://example.org/a").ok());
}

}  // namespace
}  // namespace fetchq::queue

namespace fetchq::queue {
namespace {

TEST(RequestHeaders, ParsedAsNameAndTrimmedValue) {
  auto h = parse_header("X-Trace:   abc def  ");
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h.value(), (RequestHeader{"X-Trace", "abc def"}));
  auto empty = parse_header("X-Empty:");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty.value().value, "");
  auto colon_in_value = parse_header("Cookie: a=b:c");
  ASSERT_TRUE(colon_in_value.ok());
  EXPECT_EQ(colon_in_value.value().value, "a=b:c");
}

TEST(RequestHeaders, MalformedOnesAreRefusedWithoutTheirValue) {
  for (const std::string& line :
       std::vector<std::string>{"Authorization Bearer s3cret", ": s3cret", " X: s3cret", "X Y: s3cret",
                                "X\r\nY: s3cret", "X: s3cret\r\nInjected: 1", "X: s3cret\n",
                                std::string("X: s3cret\0", 10), "X: s3cret\x7f"}) {
    auto h = parse_header(line);
    ASSERT_FALSE(h.ok()) << line;
    EXPECT_EQ(h.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(h.error().message.find("s3cret"), std::string::npos) << h.error().message;
  }
  EXPECT_FALSE(check_header({"X-Long", std::string(kMaxHeaderValue + 1, 'a')}).ok());
  EXPECT_TRUE(check_header({"X-Tab", "a\tb"}).ok());
}

TEST(RequestHeaders, TheEnginesOwnHeadersCannotBeGiven) {
  for (const char* name : {"Range", "range", "If-Range", "IF-RANGE", "Accept-Encoding", "Host", "Content-Length",
                           "Transfer-Encoding", "Connection", "TE", "Upgrade", "User-Agent"}) {
    auto st = check_header({name, "x"});
    ASSERT_FALSE(st.ok()) << name;
    EXPECT_NE(st.error().message.find(name), std::string::npos) << st.error().message;
  }
  EXPECT_TRUE(check_header({"If-None-Match", "x"}).ok());
  EXPECT_TRUE(check_header({"Accept", "application/octet-stream"}).ok());
}

TEST(RequestHeaders, SecretOnesAreShownRedacted) {
  EXPECT_TRUE(is_secret_header("authorization"));
  EXPECT_TRUE(is_secret_header("Proxy-Authorization"));
  EXPECT_TRUE(is_secret_header("COOKIE"));
  EXPECT_FALSE(is_secret_header("Set-Cookie2"));
  EXPECT_FALSE(is_secret_header("X-Authorization-Hint"));
  EXPECT_EQ(shown_header({"Cookie", "sid=1"}), "Cookie: <secret>");
  EXPECT_EQ(shown_header({"Accept", "*/*"}), "Accept: */*");
}

TEST(RequestHeaders, CheckRequestTakesHeadersAndUserAgentOrRefusesThem) {
  DownloadRequest r{"http://h/a", "/tmp/x", {}};
  r.options.headers = {{"X-A", "1"}};
  r.options.user_agent = "agent/1";
  EXPECT_TRUE(check_request(r, {}).ok());
  r.options.headers.push_back({"Range", "bytes=0-"});
  EXPECT_FALSE(check_request(r, {}).ok());
  r.options.headers.pop_back();
  r.options.user_agent = "agent\r\nX-Injected: 1";
  EXPECT_FALSE(check_request(r, {}).ok());
  r.options.user_agent = "";
  EXPECT_FALSE(check_request(r, {}).ok());
  r.options.user_agent.reset();
  r.options.headers.assign(kMaxHeaders + 1, RequestHeader{"X-A", "1"});
  EXPECT_FALSE(check_request(r, {}).ok());
}

TEST(MirrorChecks, CheckRequestTakesUpToTheLimitAndKeepsTheirOrder) {
  DownloadRequest r{"https://src.example/f.bin", "/tmp/x", {}};
  for (size_t i = 0; i < kMaxMirrors; ++i) {
    r.options.mirrors.push_back("https://m" + std::to_string(i) + ".example/f.bin");
  }
  auto nj = check_request(r, {});
  ASSERT_TRUE(nj.ok()) << nj.error().message;
  EXPECT_EQ(nj->request.options.mirrors, r.options.mirrors);
  r.options.mirrors.push_back("https://one-too-many.example/f.bin");
  auto over = check_request(r, {});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(over.error().message.find("at most 15 mirrors"), std::string::npos)
      << over.error().message;
}

TEST(MirrorChecks, EachMustBeAnHttpUrl) {
  const std::string src = "https://src.example/f";
  EXPECT_TRUE(check_mirrors({"http://a.example/f", "https://b.example:8443/g?x=1"}, src).ok());
  for (const char* bad :
       {"", "not a url", "http://", "http://exa mple.org/", "http://a.example/\x01"}) {
    auto st = check_mirrors({bad}, src);
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument) << bad;
    EXPECT_EQ(st.error().message.rfind("mirror: ", 0), 0u) << st.error().message;
  }
  EXPECT_EQ(check_mirrors({"ftp://a.example/f"}, src).error().code, ErrorCode::kSchemeNotAllowed);
}

TEST(MirrorChecks, UserInfoIsRefusedAndItsPasswordNeverShown) {
  const std::string src = "https://src.example/f";
  for (const char* bad : {"https://user@m.example/f", "https://user:pw-secret@m.example/f",
                          "https://:pw-secret@m.example/f", "https://@m.example/f"}) {
    auto st = check_mirrors({bad}, src);
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(st.error().message.find("cannot hold a user name or password"), std::string::npos)
        << st.error().message;
    EXPECT_EQ(st.error().message.find("pw-secret"), std::string::npos) << st.error().message;
  }
  // An '@' in the path or query is no user info.
  EXPECT_TRUE(check_mirrors({"https://m.example/a@b?c=d@e"}, src).ok());
  // Through check_request too, and a password in the source itself is still allowed.
  DownloadRequest r{"https://u:pw@src.example/f", "/tmp/x", {}};
  r.options.mirrors = {"https://src.example/g"};
  EXPECT_TRUE(check_request(r, {}).ok());
  r.options.mirrors = {"https://u:pw-secret@src.example/g"};
  auto nj = check_request(r, {});
  ASSERT_FALSE(nj.ok());
  EXPECT_EQ(nj.error().message.find("pw-secret"), std::string::npos) << nj.error().message;
}

TEST(MirrorChecks, TheSourceItselfOrTheSameMirrorTwiceIsRefused) {
  const std::string src = "https://src.example/f";
  auto same = check_mirrors({"https://a.example/f", src}, src);
  ASSERT_FALSE(same.ok());
  EXPECT_EQ(same.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(same.error().message.find("the source itself"), std::string::npos)
      << same.error().message;
  // Spelt differently, or with the source's user info left out, it is still the source.
  EXPECT_FALSE(check_mirrors({"HTTPS://SRC.example/f"}, src).ok());
  EXPECT_FALSE(check_mirrors({"https://src.example:443/f"}, src).ok());
  EXPECT_FALSE(check_mirrors({"https://src.example/f"}, "https://u:pw@src.example/f").ok());
  auto twice =
      check_mirrors({"https://a.example/f", "https://b.example/f", "https://a.example/f"}, src);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(twice.error().message.find("listed twice"), std::string::npos) << twice.error().message;
  EXPECT_FALSE(check_mirrors({"https://a.example/f", "https://A.EXAMPLE/f"}, src).ok());
  // Another path on the same host is another file's URL, and allowed.
  EXPECT_TRUE(check_mirrors({"https://src.example/g", "https://src.example/f?alt=1"}, src).ok());
}

TEST(MirrorChecks, WithSecretsOnlyTheSourcesOriginIsAllowed) {
  const std::string src = "https://src.example/f";
  EXPECT_TRUE(check_mirrors_on_origin({}, src).ok());
  EXPECT_TRUE(
      check_mirrors_on_origin({"https://src.example/g", "https://SRC.example:443/h"}, src).ok());
  for (const char* other : {"https://other.example/f", "http://src.example/f",
                            "https://src.example:8443/f", "https://sub.src.example/f"}) {
    auto st = check_mirrors_on_origin({"https://src.example/g", other}, src);
    ASSERT_FALSE(st.ok()) << other;
    EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(st.error().message.find("never sent elsewhere"), std::string::npos)
        << st.error().message;
    EXPECT_NE(st.error().message.find("https://src.example:443"), std::string::npos)
        << st.error().message;
    EXPECT_NE(st.error().message.find(other), std::string::npos) << st.error().message;
  }
}

TEST(CaCertAndProxy, AMissingOrEmptyCaFileAndAnUnknownProxySchemeAreRefused) {
  TempDir dir;
  EXPECT_NE(check_ca_cert(dir / "none.pem").error().message.find("none.pem"), std::string::npos);
  fetchq::testing::write_file(dir / "empty.pem", "not a certificate\n");
  EXPECT_FALSE(check_ca_cert(dir / "empty.pem").ok());
  EXPECT_FALSE(check_ca_cert(dir.path()).ok());
  fetchq::testing::write_file(dir / "ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  EXPECT_TRUE(check_ca_cert(dir / "ca.pem").ok());
  EXPECT_TRUE(check_proxy("http://u:p@proxy:3128").ok());
  EXPECT_TRUE(check_proxy("socks5h://proxy:1080").ok());
  EXPECT_TRUE(check_proxy("proxy:3128").ok());
  auto bad = check_proxy("gopher://u:pw-secret@proxy:70");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message.find("pw-secret"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(check_proxy("http://proxy :3128").ok());
}

}  // namespace
}  // namespace fetchq::queue
