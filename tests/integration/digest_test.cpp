// Digests a server states (Repr-Digest, Digest, Hugging Face's X-Linked-Etag): the file is
// checked against them before it is kept, as against --sha256, and show says where the sum
// came from.
#include <filesystem>

#include "integration/helpers.h"

namespace fetchq::testing {
namespace {

std::string base64_of_hex(const std::string& hex) {
  std::string raw;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) raw.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : raw) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

class ServerDigestTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;

  Job run(DownloadQueue& q, const std::string& path, DownloadOptions o = {}) {
    Job j = submit(q, server_.url(path), dir_ / "f.bin", o);
    EXPECT_TRUE(q.join(std::chrono::seconds(60)));
    return *q.id_to_job(j.id);
  }
};

TEST_F(ServerDigestTest, ARightReprDigestIsCheckedAndShown) {
  Resource r;
  r.body = make_body(300000, 120);
  const std::string hex = sha256_hex_of(r.body);
  r.extra_headers = {{"Repr-Digest", "sha-256=:" + base64_of_hex(hex) + ":"}};
  server_.add("/ok.bin", r);
  auto q = open_queue(fast_options(dir_));
  Job j = run(*q, "/ok.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(j.sha256, hex);
  EXPECT_EQ(j.sha256_from, "Repr-Digest");
  EXPECT_EQ(read_file(dir_ / "f.bin"), r.body);
}

TEST_F(ServerDigestTest, AWrongDigestKeepsNoFileAndNamesItsHeader) {
  Resource r;
  r.body = make_body(300000, 121);
  r.extra_headers = {{"Digest", "SHA-256=" + base64_of_hex(sha256_hex_of("other bytes"))}};
  server_.add("/bad.bin", r);
  auto q = open_queue(fast_options(dir_));
  Job j = run(*q, "/bad.bin");
  ASSERT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type, "ChecksumMismatch");
  EXPECT_NE(j.error.value_or("").find("the server's Digest"), std::string::npos) << j.error.value_or("");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "f.bin"));  // never kept under its name
  // The user's --sha256 wins over what the server says.
  DownloadOptions o;
  o.sha256 = sha256_hex_of(r.body);
  o.if_exists = IfExists::kOverwrite;
  Job k = submit(*q, server_.url("/bad.bin"), dir_ / "g.bin", o);
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  k = *q->id_to_job(k.id);
  ASSERT_EQ(k.status, JobStatus::kCompleted) << k.error.value_or("");
  EXPECT_EQ(k.sha256, sha256_hex_of(r.body));
  EXPECT_FALSE(k.sha256_from.has_value());
}

TEST_F(ServerDigestTest, AnXLinkedEtagOnTheRedirectIsTheFilesSum) {
  Resource file;
  file.body = make_body(200000, 122);
  server_.add("/cdn/blob", file);
  Resource hub;  // as huggingface.co answers for an LFS file: a redirect that names the file
  hub.redirect_to = server_.url("/cdn/blob");
  hub.extra_headers = {{"X-Linked-Etag", "\"" + sha256_hex_of(file.body) + "\""},
                       {"X-Linked-Size", std::to_string(file.body.size())}};
  server_.add("/resolve/main/model.bin", hub);
  Resource liar = hub;
  liar.extra_headers = {{"X-Linked-Etag", "\"" + sha256_hex_of("not it") + "\""},
                        {"X-Linked-Size", std::to_string(file.body.size())}};
  server_.add("/resolve/main/liar.bin", liar);
  auto q = open_queue(fast_options(dir_));
  Job j = run(*q, "/resolve/main/model.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(j.sha256_from, "X-Linked-Etag");
  EXPECT_EQ(j.sha256, sha256_hex_of(file.body));
  Job k = submit(*q, server_.url("/resolve/main/liar.bin"), dir_ / "liar.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  k = *q->id_to_job(k.id);
  EXPECT_EQ(k.status, JobStatus::kError);
  EXPECT_EQ(k.error_type, "ChecksumMismatch");
}

TEST_F(ServerDigestTest, ASegmentedDownloadAndItsResumeAreCheckedToo) {
  Resource r;
  r.body = make_body(24 << 20, 123);
  r.rate_bytes_per_s = 16 << 20;
  r.extra_headers = {{"Repr-Digest", "sha-256=:" + base64_of_hex(sha256_hex_of(r.body)) + ":"}};
  server_.add("/big.bin", r);
  QueueOptions o = fast_options(dir_);
  o.connections = 4;
  auto q = open_queue(o);
  Job j = submit(*q, server_.url("/big.bin"), dir_ / "f.bin");
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(j.id)->bytes > (4 << 20); }));
  ASSERT_TRUE(q->pause_job(j.id).ok());
  EXPECT_EQ(q->id_to_job(j.id)->sha256_from, "Repr-Digest");  // kept for the resume
  ASSERT_TRUE(q->resume_job(j.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  j = *q->id_to_job(j.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(j.sha256_from, "Repr-Digest");
  EXPECT_EQ(sha256_file(dir_ / "f.bin"), sha256_hex_of(r.body));
}

}  // namespace
}  // namespace fetchq::testing
