// Content-Range, Retry-After and status classes used by the transfer engine.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "transfer/transfer.h"

namespace fetchq::transfer {
namespace {

TEST(ContentLength, OneLengthOrAListOfTheSameOne) {
  EXPECT_TRUE(content_length_agrees("100", nullptr));
  EXPECT_TRUE(content_length_agrees("0", nullptr));
  EXPECT_TRUE(content_length_agrees("100, 100", nullptr));
  const std::string before = "100";
  EXPECT_TRUE(content_length_agrees("100", &before));
  EXPECT_FALSE(content_length_agrees("50", &before));  // two lines that disagree
  EXPECT_FALSE(content_length_agrees("100, 50", nullptr));
  EXPECT_FALSE(content_length_agrees("99999999999999999999", nullptr));  // does not fit
  EXPECT_FALSE(content_length_agrees("-1", nullptr));
  EXPECT_FALSE(content_length_agrees("+5", nullptr));
  EXPECT_FALSE(content_length_agrees("12abc", nullptr));
  EXPECT_FALSE(content_length_agrees("", nullptr));
  EXPECT_FALSE(content_length_agrees("100,", nullptr));
}

TEST(Validators, IfRangeTakesAStrongETagElseLastModified) {
  const std::string lm = "Wed, 02 Dec 2026 10:00:00 GMT";
  EXPECT_EQ(if_range_validator("\"a\"", lm), "\"a\"");
  EXPECT_EQ(if_range_validator("W/\"a\"", lm), lm);  // a weak tag names no bytes
  EXPECT_EQ(if_range_validator("", lm), lm);
  EXPECT_EQ(if_range_validator("W/\"a\"", ""), "");
}

TEST(Validators, AnAnswerNamingAnotherVersionIsTold) {
  const std::string lm = "Wed, 02 Dec 2026 10:00:00 GMT", lm2 = "Thu, 03 Dec 2026 10:00:00 GMT";
  // The same version, by either validator.
  EXPECT_FALSE(names_another_version("\"a\"", "\"a\"", lm2));
  EXPECT_FALSE(names_another_version(lm, "", lm));
  EXPECT_FALSE(names_another_version(lm, "W/\"x\"", lm));
  // Another strong ETag, or another Last-Modified where a date was asked.
  EXPECT_TRUE(names_another_version("\"a\"", "\"b\"", ""));
  EXPECT_TRUE(names_another_version("\"a\"", "\"b\"", lm));
  EXPECT_TRUE(names_another_version(lm, "", lm2));
  EXPECT_TRUE(names_another_version(lm, "W/\"b\"", lm2));
  // Only a validator of the kind asked counts: a 206 that leaves out or weakens the ETag, or
  // names an ETag where a date was asked, may come from a server that honours If-Range.
  EXPECT_FALSE(names_another_version("\"a\"", "", lm));
  EXPECT_FALSE(names_another_version("\"a\"", "W/\"a\"", lm));
  EXPECT_FALSE(names_another_version(lm, "\"b\"", ""));
  // A tag a server sent unquoted, named again.
  EXPECT_FALSE(names_another_version("abc", "abc", lm2));
  // Nothing asked, or nothing named: nothing to tell.
  EXPECT_FALSE(names_another_version("", "\"b\"", lm));
  EXPECT_FALSE(names_another_version("\"a\"", "", ""));
  EXPECT_FALSE(names_another_version(lm, "", ""));
}

TEST(ContentRange, ParsesRangesAndStars) {
  int64_t start = 0, total = 0;
  ASSERT_TRUE(parse_content_range("bytes 100-199/1000", &start, &total));
  EXPECT_EQ(start, 100);
  EXPECT_EQ(total, 1000);
  ASSERT_TRUE(parse_content_range("bytes */1000", &start, &total));
  EXPECT_EQ(start, -1);
  EXPECT_EQ(total, 1000);
  ASSERT_TRUE(parse_content_range("bytes 0-9/*", &start, &total));
  EXPECT_EQ(total, -1);
  ASSERT_TRUE(parse_content_range("bytes 5000000000-5000000099/6000000000", &start, &total));
  EXPECT_EQ(start, 5000000000LL);  // offsets above 4 GiB
  EXPECT_FALSE(parse_content_range("", &start, &total));
  EXPECT_FALSE(parse_content_range("bytes 10-5/100", &start, &total));
  EXPECT_FALSE(parse_content_range("items 0-1/2", &start, &total));
  EXPECT_FALSE(parse_content_range("bytes -5-10/100", &start, &total));
  EXPECT_FALSE(parse_content_range("bytes 1-2/x", &start, &total));
}

TEST(ContentRange, GivesTheLastByteToo) {
  int64_t start = 0, end = 0, total = 0;
  ASSERT_TRUE(parse_content_range("bytes 100000-199999/400000", &start, &end, &total));
  EXPECT_EQ(start, 100000);
  EXPECT_EQ(end, 199999);
  EXPECT_EQ(total, 400000);
  ASSERT_TRUE(parse_content_range("bytes */400000", &start, &end, &total));
  EXPECT_EQ(end, -1);
  EXPECT_FALSE(parse_content_range("bytes 200-100/400", &start, &end, &total));
}

TEST(RetryAfter, SecondsAndDates) {
  EXPECT_EQ(parse_retry_after("120", 0).value_or(-1), 120000);
  EXPECT_EQ(parse_retry_after(" 0", 0).value_or(-1), 0);
  // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s after the epoch.
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777000LL - 5000).value_or(-1), 5000);
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777000LL + 5000).value_or(-1), 0);
  EXPECT_FALSE(parse_retry_after("soon", 0).has_value());
  EXPECT_FALSE(parse_retry_after("", 0).has_value());
}

TEST(Status, ReasonPhrasesComeFromTheStandardTable) {
  EXPECT_EQ(reason_phrase(404), "Not Found");
  EXPECT_EQ(reason_phrase(503), "Service Unavailable");
  EXPECT_EQ(reason_phrase(799), "Unknown Status");
  for (long c : {408, 429, 500, 502, 503, 504}) EXPECT_TRUE(is_retryable_status(c)) << c;
  for (long c : {400, 401, 403, 404, 410, 416, 501}) EXPECT_FALSE(is_retryable_status(c)) << c;
}

}  // namespace
}  // namespace fetchq::transfer

namespace fetchq::transfer {
namespace {

// Found by fuzz_http_headers: these overflowed int64 or took a sign as a length.
TEST(FuzzRegressions, HugeRetryAfterIsCappedAndSignsAreNotLengths) {
  EXPECT_EQ(parse_retry_after("9223372036854776", 0).value_or(-1), kMaxRetryAfterMs);
  EXPECT_EQ(parse_retry_after("99999999999999999999999", 0).value_or(-1), kMaxRetryAfterMs);
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 833720360 07:28:00 GMT", 0).value_or(-1), kMaxRetryAfterMs);
  int64_t start = 0, total = 0;
  EXPECT_FALSE(parse_content_range("bytes 0-9/-0", &start, &total));
  EXPECT_FALSE(parse_content_range("bytes -0-9/10", &start, &total));
}

TEST(ServerDigest, EachHeaderFormIsReadAndAnythingElseIgnored) {
  // sha256("fetchq")
  const std::string hex = "1c0c873b5f33452c720818478cc8a9fa7682209b78718397ce19c242091a0101";
  const std::string b64 = "HAyHO18zRSxyCBhHjMip+naCIJt4cYOXzhnCQgkaAQE=";
  using H = std::map<std::string, std::string>;
  auto d = server_digest(H{{"repr-digest", "sha-512=:AAAA:, sha-256=:" + b64 + ":"}}, 6);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->sha256, hex);
  EXPECT_EQ(d->from, "Repr-Digest");
  d = server_digest(H{{"digest", "MD5=abc, SHA-256=" + b64}}, 6);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->sha256, hex);
  EXPECT_EQ(d->from, "Digest");
  // Repr-Digest wins over the older Digest.
  d = server_digest(H{{"digest", "SHA-256=" + std::string(43, 'A') + "="}, {"repr-digest", "sha-256=:" + b64 + ":"}}, 6);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->from, "Repr-Digest");
  d = server_digest(H{{"x-linked-etag", "\"" + hex + "\""}, {"x-linked-size", "6"}}, 6);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->sha256, hex);
  EXPECT_EQ(d->from, "X-Linked-Etag");
  EXPECT_TRUE(server_digest(H{{"x-linked-etag", hex}}, 0));  // no size to compare: taken
  // Not a sha256, or not this file: nothing.
  for (const H& h : std::vector<H>{
           H{},
           H{{"repr-digest", "sha-256=" + b64}},              // not a byte sequence (no colons)
           H{{"repr-digest", "sha-256=:" + b64.substr(4) + ":"}},  // too short
           H{{"repr-digest", "sha-256=:not*base64:"}},
           H{{"repr-digest", "sha-512=:" + b64 + ":"}},
           H{{"digest", "MD5=" + b64}},
           H{{"x-linked-etag", "\"3d37e8d7d3a4fb5c34dec5661d96ae1909943d87\""}},       // a git blob id
           H{{"x-linked-etag", "W/\"" + hex + "\""}},
           H{{"x-linked-etag", hex}, {"x-linked-size", "7"}},  // another size than the file's
           H{{"x-linked-etag", hex}, {"x-linked-size", "6x"}},
           H{{"etag", "\"" + hex + "\""}},           // a plain ETag says nothing
       }) {
    EXPECT_FALSE(server_digest(h, 6)) << (h.empty() ? "" : h.begin()->first + ": " + h.begin()->second);
  }
}

}  // namespace
}  // namespace fetchq::transfer
