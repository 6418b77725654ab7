// Submission checks: only http(s) URLs, absolute destinations, confined to the download roots.
#include "queue/request_check.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <memory>

#include "util/fs.h"

namespace fetchq::queue {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Resolves ".", ".." and symbolic links of the longest existing prefix; keeps the rest as is
// (it cannot hold links yet), refusing ".." in it.
std::optional<std::string> resolve(const std::string& path) {
  if (path.empty() || path[0] != '/') return std::nullopt;
  std::string existing = path;
  std::string rest;
  for (;;) {
    char buf[PATH_MAX];
    if (::realpath(existing.c_str(), buf) != nullptr) {
      std::string out = buf;
      if (!rest.empty()) {
        size_t i = 0;
        while (i < rest.size()) {
          size_t j = rest.find('/', i);
          if (j == std::string::npos) j = rest.size();
          std::string part = rest.substr(i, j - i);
          if (part == "..") return std::nullopt;
          if (!part.empty() && part != ".") out += (out == "/" ? "" : "/") + part;
          i = j + 1;
        }
      }
      return out;
    }
    auto slash = existing.find_last_of('/');
    if (slash == std::string::npos || existing == "/") return std::nullopt;
    rest = existing.substr(slash + 1) + (rest.empty() ? "" : "/" + rest);
    existing = slash == 0 ? "/" : existing.substr(0, slash);
  }
}

bool valid_sha256(const std::string& s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c); });
}

}  // namespace

Status check_source_url(const std::string& url) {
  if (url.empty()) return make_error(ErrorCode::kInvalidArgument, "the URL is empty");
  if (url.size() > 8192) return make_error(ErrorCode::kInvalidArgument, "the URL is too long");
  for (unsigned char c : url) {
    if (c < 0x21 || c == 0x7f) {
      return make_error(ErrorCode::kInvalidArgument,
                        "the URL holds spaces or control characters: " + url.substr(0, 200));
    }
  }
  // The scheme first, so that file:, ftp: and the like are named as what they are.
  auto colon = url.find(':');
  bool scheme_ok = colon != std::string::npos && colon > 0 && std::isalpha(static_cast<unsigned char>(url[0]));
  for (size_t i = 0; scheme_ok && i < colon; ++i) {
    unsigned char c = static_cast<unsigned char>(url[i]);
    scheme_ok = std::isalnum(c) || c == '+' || c == '-' || c == '.';
  }
  if (!scheme_ok) return make_error(ErrorCode::kInvalidArgument, "not a valid URL: " + url.substr(0, 200));
  const std::string scheme = lower(url.substr(0, colon));
  if (scheme != "http" && scheme != "https") {
    return make_error(ErrorCode::kSchemeNotAllowed,
                      "scheme not allowed: '" + scheme + "' (only http and https): " + url.substr(0, 200));
  }
  // libcurl forgives "http:/host" and "http:///host"; a URL stored as submitted must say what
  // it means, so insist on exactly "scheme://" followed by a host.
  if (url.compare(colon, 3, "://") != 0 || url.size() <= colon + 3 || url[colon + 3] == '/') {
    return make_error(ErrorCode::kInvalidArgument, "not a valid URL: " + url.substr(0, 200));
  }
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> h(curl_url(), curl_url_cleanup);
  if (curl_url_set(h.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return make_error(ErrorCode::kInvalidArgument, "not a valid URL: " + url.substr(0, 200));
  }
  char* host = nullptr;
  bool has_host = curl_url_get(h.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host;
  if (host) curl_free(host);
  if (!has_host) return make_error(ErrorCode::kInvalidArgument, "the URL has no host: " + url);
  return Ok{};
}

std::optional<std::string> url_host(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> h(curl_url(), curl_url_cleanup);
  if (curl_url_set(h.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return std::nullopt;
  char* host = nullptr;
  if (curl_url_get(h.get(), CURLUPART_HOST, &host, 0) != CURLUE_OK || !host) return std::nullopt;
  std::string out = lower(host);
  curl_free(host);
  while (!out.empty() && out.back() == '.') out.pop_back();  // "example.org." is example.org
  return out;
}

bool host_matches(const std::string& host, const std::string& pattern) {
  std::string p = lower(pattern);
  if (p.rfind("*.", 0) == 0) {
    std::string suffix = p.substr(1);  // ".example.org"
    return host.size() > suffix.size() && host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  return !p.empty() && host == p;
}

bool is_under_roots(const std::string& path, const std::vector<std::string>& roots) {
  auto p = resolve(path);
  if (!p) return false;
  for (const auto& root : roots) {
    auto r = resolve(root);
    if (!r) continue;
    if (*r == "/" || *p == *r || (p->size() > r->size() && p->compare(0, r->size(), *r) == 0 &&
                                  (*p)[r->size()] == '/')) {
      return true;
    }
  }
  return false;
}

Result<store::NewJob> check_request(const DownloadRequest& request,
                                    const std::vector<std::string>& download_roots,
                                    DestCache* cache) {
  auto st = check_source_url(request.source);
  if (!st) return st.error();
  const std::string& dest = request.dest;
  if (dest.empty() || dest[0] != '/') {
    return make_error(ErrorCode::kInvalidArgument,
                      "the destination must be an absolute path: '" + dest + "'");
  }
  if (dest.find('\0') != std::string::npos || dest.size() > 4000) {
    return make_error(ErrorCode::kInvalidArgument, "the destination is not a usable path");
  }
  if (request.options.sha256 && !valid_sha256(*request.options.sha256)) {
    return make_error(ErrorCode::kInvalidArgument, "sha256 must be 64 hex digits");
  }
  DestFacts facts;
  auto cached = cache ? cache->find(dest) : DestCache::iterator{};
  if (cache && cached != cache->end()) {
    facts = cached->second;
  } else {
    facts.under_roots = download_roots.empty() || is_under_roots(dest, download_roots);
    facts.is_directory = dest.back() == '/' || util::is_directory(dest);
    if (cache) cache->emplace(dest, facts);
  }
  if (!facts.under_roots) {
    return make_error(ErrorCode::kOutsideRoots,
                      "destination outside the download roots: " + dest);
  }
  store::NewJob nj;
  nj.request = request;
  if (nj.request.options.sha256) nj.request.options.sha256 = lower(*nj.request.options.sha256);
  nj.dest_is_dir = facts.is_directory;
  if (!nj.dest_is_dir) {
    std::string base = dest.substr(dest.find_last_of('/') + 1);
    if (base == "." || base == "..") {
      return make_error(ErrorCode::kInvalidArgument, "the destination file name is not usable: " + dest);
    }
    nj.download_path = dest;
  }
  return nj;
}

}  // namespace fetchq::queue
