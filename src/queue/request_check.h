// Checks a submission before it is accepted: URL scheme, destination, options, download roots.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetchq/job.h"
#include "fetchq/result.h"
#include "store/store.h"
#include "transfer/transfer.h"

namespace fetchq::queue {

// http and https only, with a host. The message says what is wrong.
Status check_source_url(const std::string& url);

// The URL's host, lower-case, as libcurl parses it; nullopt when there is none.
std::optional<std::string> url_host(const std::string& url);
// "scheme://host:port" of a URL: transfer::url_origin (transfer/transfer.h).
using transfer::url_origin;
// Host-name match of a TokenRule pattern: exact, or "*.suffix" for subdomains of suffix.
bool host_matches(const std::string& host, const std::string& pattern);

// A Bearer token as sent in a header: non-empty, without CR, LF or other control characters
// (which would end the Authorization header and start one of the sender's choosing).
Status check_access_token(const std::string& token);

// Request headers of a job (DownloadOptions::headers). check_header refuses an empty or
// malformed name, CR, LF and other control characters in the value, values over
// kMaxHeaderValue bytes, and the headers fetchq sets itself (Range, If-Range, Accept-Encoding,
// Host, Content-Length, Transfer-Encoding, Connection, TE, Upgrade; User-Agent has an option
// of its own). Messages name the header, never its value (which may be a secret).
constexpr size_t kMaxHeaders = 64;
constexpr size_t kMaxHeaderValue = 8192;
Status check_header(const RequestHeader& header);
// "Name: value" (spaces around the value dropped), checked as above.
Result<RequestHeader> parse_header(std::string_view line);
// Non-empty, at most 1024 bytes, without control characters.
Status check_user_agent(const std::string& user_agent);

// Mirrors of a job (DownloadOptions::mirrors). check_mirrors refuses more than kMaxMirrors, a
// URL check_source_url refuses, user info (a user name or password: only the source's password
// is split out and kept apart; one in a mirror would be stored and shown in the clear), and a
// mirror equal to the source or to an earlier mirror. Messages show URLs through redact_url.
constexpr size_t kMaxMirrors = 15;
Status check_mirrors(const std::vector<std::string>& mirrors, const std::string& source);
// For a job that holds a secret (an access token, given or from a rule, a password in its
// source URL, or any request header): every mirror must be on the source's origin, since those
// secrets are sent with the mirror's requests and never to another host.
Status check_mirrors_on_origin(const std::vector<std::string>& mirrors, const std::string& source);

// A CA file (QueueOptions::ca_cert): a readable regular file holding at least one PEM
// certificate. The message names the path and what is wrong.
Status check_ca_cert(const std::string& path);
// A proxy URL (QueueOptions::proxy): no spaces or control characters, and a scheme libcurl
// knows when one is written. The message never repeats the URL, which may hold a password.
Status check_proxy(const std::string& proxy);

// Token rules. A pattern is "host", "*.suffix" or "https://host[:port]": it applies to https
// URLs only, so a rule token never travels in clear text. "http://host:port" (the port written
// out) is the one way to give a token to plain http, and then to that scheme, host and port
// only. The message says what is wrong with a pattern.
Status check_token_rule_pattern(const std::string& pattern);
bool token_rule_applies(const std::string& pattern, const std::string& url);

// The URL as it may be shown anywhere: a password in it replaced by "***". Works on any text,
// a malformed URL included.
std::string redact_url(const std::string& url);

// A URL's password, split out at submission. `shown` is the URL with the password replaced
// by "***" (what the job's source keeps); `password` is the decoded secret.
struct UrlPassword {
  std::string shown;
  std::string password;
};
// nullopt when the URL holds no password (a user name alone is no secret).
std::optional<UrlPassword> split_url_password(const std::string& url);

// What a transfer is given for a job's source: the URL without user info, and the decoded user
// name and password, handed to libcurl apart so that no text built from the URL holds them.
struct TransferUrl {
  std::string url;
  std::string user;
  std::optional<std::string> password;
};
// password: the job's stored secret, if any. A source without user info comes back as is.
TransferUrl transfer_url(const std::string& source, const std::optional<std::string>& password);

// True when `path` lies under one of `roots` once "..", "." and symbolic links of its existing
// part are resolved. Roots are resolved the same way.
bool is_under_roots(const std::string& path, const std::vector<std::string>& roots);

// What the file system said about a destination, kept for the rest of one batch: a batch of
// thousands of jobs into one folder asks once, not once per job.
struct DestFacts {
  bool under_roots = true;
  bool is_directory = false;
};
using DestCache = std::map<std::string, DestFacts, std::less<>>;

// Validates one request and works out whether dest is a folder and, if not, the file's path.
// With a cache, the facts about a destination already seen in this batch are reused.
Result<store::NewJob> check_request(const DownloadRequest& request,
                                    const std::vector<std::string>& download_roots,
                                    DestCache* cache = nullptr);

}  // namespace fetchq::queue
