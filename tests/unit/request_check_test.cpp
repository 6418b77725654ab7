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
TEST(FuzzRegressions, UrlsNeedSchemeSlashSlashHost) {
  EXPECT_FALSE(check_source_url("http:/example.org/a").ok());
  EXPECT_FALSE(check_source_url("http:///example.org/a").ok());
  EXPECT_FALSE(check_source_url("http:example.org").ok());
  EXPECT_FALSE(check_source_url("http:/ttp://example.org/a").ok());
  EXPECT_TRUE(check_source_url("http://example.org/a").ok());
}

}  // namespace
}  // namespace fetchq::queue
