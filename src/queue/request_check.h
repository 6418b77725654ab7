// Checks a submission before it is accepted: URL scheme, destination, options, download roots.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fetchq/job.h"
#include "fetchq/result.h"
#include "store/store.h"

namespace fetchq::queue {

// http and https only, with a host. The message says what is wrong.
Status check_source_url(const std::string& url);

// The URL's host, lower-case, as libcurl parses it; nullopt when there is none.
std::optional<std::string> url_host(const std::string& url);
// Host-name match of a TokenRule pattern: exact, or "*.suffix" for subdomains of suffix.
bool host_matches(const std::string& host, const std::string& pattern);

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
