// Secrets stay secret: tokens and URL passwords go where they should, and nowhere else (not to
// plain http, not into listings, events, errors or the log); misleading errors are named.
//
// The test server is plain HTTP: the https cases (a token refused on an https -> http redirect,
// a rule token given to an https URL) cannot be exercised here and are covered by unit tests of
// the rule matching only.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return;
    off += static_cast<size_t>(w);
  }
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

// A header line over libcurl's 100 KB, and a header block over 300 KB in lines of 1 KB: named
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
    for (int i = 0; i < 300; ++i) h += "X-H" + std::to_string(i) + ": " + std::string(1024, 'b') + "\r\n";
    send_all(fd, h + "Content-Length: 4\r\n\r\ndata");
  });
  auto q = open_queue(fast_options(dir));
  auto line = submit(*q, server.url("/line"), dir / "line.bin");
  auto block = submit(*q, server.url("/block"), dir / "block.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  for (auto [id, path] : {std::pair{line.id, "/line"}, std::pair{block.id, "/block"}}) {
    auto j = q->id_to_job(id);
    ASSERT_TRUE(j);
    EXPECT_EQ(j->status, JobStatus::kError);
    EXPECT_EQ(j->error_type.value_or(""), "HeaderTooLarge") << j->error.value_or("");
    EXPECT_NE(j->error.value_or("").find(server.url(path)), std::string::npos) << j->error.value_or("");
    EXPECT_EQ(j->attempts, 1);
    EXPECT_EQ(server.requests_for(path).size(), 1u);
  }
}

// libcurl (7.88) refuses a response whose headers hold a NUL before fetchq sees any header, so
// the name cannot fall back to the URL's (file_name_test shows it would): the job fails once,
// with an error that says so, instead of an unnamed TransferError retried again and again.
TEST(Secrets, ANulInAResponseHeaderIsNamedAndNotRetried) {
  TempDir dir;
  TestServer server;
  server.set_handler("/name.txt", [](const RequestLog&, int fd) {
    send_all(fd, std::string("HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename=\"a\0b.txt\"\r\n"
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

}  // namespace
}  // namespace fetchq::testing
