// Submission checks: only http(s) URLs, absolute destinations, confined to the download roots.
#include "queue/request_check.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

#include "util/fs.h"
#include "util/rate.h"
#include "util/strings.h"

namespace fetchq::queue {
namespace {

using util::lower;

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

// NAME_MAX of the folder, asked of its nearest existing ancestor (the rest is created on the
// same file system); 255 when the system cannot tell.
size_t max_name_bytes(std::string dir) {
  while (!dir.empty()) {
    errno = 0;
    long n = ::pathconf(dir.c_str(), _PC_NAME_MAX);
    if (n > 0) return static_cast<size_t>(n);
    if (errno != ENOENT && errno != ENOTDIR) break;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    auto slash = dir.find_last_of('/');
    if (slash == std::string::npos || dir == "/") break;
    dir = slash == 0 ? "/" : dir.substr(0, slash);
  }
  return NAME_MAX;
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
      return make_error(
          ErrorCode::kInvalidArgument,
          "the URL holds spaces or control characters: " + redact_url(url).substr(0, 200));
    }
  }
  // The scheme first, so that file:, ftp: and the like are named as what they are.
  auto colon = url.find(':');
  bool scheme_ok = colon != std::string::npos && colon > 0 && std::isalpha(static_cast<unsigned char>(url[0]));
  for (size_t i = 0; scheme_ok && i < colon; ++i) {
    unsigned char c = static_cast<unsigned char>(url[i]);
    scheme_ok = std::isalnum(c) || c == '+' || c == '-' || c == '.';
  }
  if (!scheme_ok) {
    return make_error(ErrorCode::kInvalidArgument,
                      "not a valid URL: " + redact_url(url).substr(0, 200));
  }
  const std::string scheme = lower(url.substr(0, colon));
  if (scheme != "http" && scheme != "https") {
    return make_error(ErrorCode::kSchemeNotAllowed,
                      "scheme not allowed: '" + scheme +
                          "' (only http and https): " + redact_url(url).substr(0, 200));
  }
  // libcurl forgives "http:/host" and "http:///host"; a URL stored as submitted must say what
  // it means, so insist on exactly "scheme://" followed by a host.
  if (url.compare(colon, 3, "://") != 0 || url.size() <= colon + 3 || url[colon + 3] == '/') {
    return make_error(ErrorCode::kInvalidArgument,
                      "not a valid URL: " + redact_url(url).substr(0, 200));
  }
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> h(curl_url(), curl_url_cleanup);
  if (curl_url_set(h.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return make_error(ErrorCode::kInvalidArgument,
                      "not a valid URL: " + redact_url(url).substr(0, 200));
  }
  char* host = nullptr;
  bool has_host = curl_url_get(h.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host;
  if (host) curl_free(host);
  if (!has_host) {
    return make_error(ErrorCode::kInvalidArgument, "the URL has no host: " + redact_url(url));
  }
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

namespace {

using CurlUrl = std::unique_ptr<CURLU, decltype(&curl_url_cleanup)>;

CurlUrl parse_url(const std::string& url) {
  CurlUrl h(curl_url(), curl_url_cleanup);
  if (h && curl_url_set(h.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) h.reset();
  return h;
}

std::optional<std::string> url_part(CURLU* h, CURLUPart part, unsigned flags = 0) {
  char* v = nullptr;
  if (curl_url_get(h, part, &v, flags) != CURLUE_OK || !v) return std::nullopt;
  std::string out = v;
  curl_free(v);
  return out;
}

// Scheme, host and port (the scheme's default when none is written) of an http(s) URL.
struct Origin {
  std::string scheme;
  std::string host;
  std::string port;
};

std::optional<Origin> origin_of(const std::string& url) {
  auto h = parse_url(url);
  if (!h) return std::nullopt;
  auto scheme = url_part(h.get(), CURLUPART_SCHEME);
  auto host = url_part(h.get(), CURLUPART_HOST);
  auto port = url_part(h.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!scheme || !host || host->empty() || !port) return std::nullopt;
  Origin o{lower(*scheme), lower(*host), *port};
  while (!o.host.empty() && o.host.back() == '.') o.host.pop_back();
  return o;
}

// Where the password of a URL's user info lies: [begin, end) of the text between the first
// ':' of the user info and the LAST '@' of the authority. The last '@', so that whichever '@'
// a parser takes for the end of the user info, the password is inside what is hidden.
std::optional<std::pair<size_t, size_t>> password_span(const std::string& url) {
  const size_t sep = url.find("://");
  if (sep == std::string::npos) return std::nullopt;
  const size_t start = sep + 3;
  size_t end = url.find_first_of("/?#", start);
  if (end == std::string::npos) end = url.size();
  const size_t at = url.rfind('@', end == 0 ? 0 : end - 1);
  if (at == std::string::npos || at < start) return std::nullopt;
  const size_t colon = url.find(':', start);
  if (colon == std::string::npos || colon >= at) return std::nullopt;
  return std::make_pair(colon + 1, at);
}

}  // namespace

Status check_access_token(const std::string& token) {
  const bool control = std::any_of(token.begin(), token.end(),
                                   [](unsigned char c) { return c < 0x20 || c == 0x7f; });
  if (control || token.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the access token is empty or holds control characters (CR, LF or others)");
  }
  return Ok{};
}

namespace {

// RFC 9110 token characters, what a field name is made of.
bool is_token_char(unsigned char c) {
  return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool has_control(std::string_view s) {
  // Tab is allowed inside a field value; CR, LF, NUL and the other controls are not.
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; });
}

}  // namespace

Result<RequestHeader> parse_header(std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    // The text is not repeated: it may be a secret written without its colon.
    return make_error(ErrorCode::kInvalidArgument, "a header must be written 'Name: value' (no colon found)");
  }
  RequestHeader h{std::string(line.substr(0, colon)), std::string(line.substr(colon + 1))};
  // Checked before the spaces around the value are dropped, so a trailing CR or LF is refused
  // too rather than quietly cut off.
  if (auto st = check_header(h); !st) return st.error();
  h.value = std::string(util::trim(h.value));
  if (auto st = check_header(h); !st) return st.error();
  return h;
}

Status check_header(const RequestHeader& h) {
  auto bad = [](const std::string& why) { return make_error(ErrorCode::kInvalidArgument, why); };
  if (h.name.empty()) return bad("a header needs a name before its colon");
  if (!std::all_of(h.name.begin(), h.name.end(), [](unsigned char c) { return is_token_char(c); })) {
    return bad("header names are letters, digits and !#$%&'*+-.^_`|~ only (no spaces, CR or LF)");
  }
  if (h.name.size() > 256) return bad("header name too long (over 256 bytes)");
  // Never the value in a message: it may be a secret.
  if (has_control(h.value)) return bad("header '" + h.name + "': its value holds CR, LF or other control characters");
  if (h.value.size() > kMaxHeaderValue) {
    return bad("header '" + h.name + "': its value is over " + std::to_string(kMaxHeaderValue) + " bytes");
  }
  const std::string name = lower(h.name);
  // Set by the engine for resuming and segments, or by libcurl for the connection: a value of
  // the user's would splice the wrong bytes into the file or break the framing.
  for (const char* own : {"range", "if-range", "accept-encoding", "content-length", "transfer-encoding",
                          "host", "connection", "te", "upgrade"}) {
    if (name == own) return bad("header '" + h.name + "' is set by fetchq itself and cannot be given");
  }
  if (name == "user-agent") return bad("give the User-Agent with --user-agent, not as a header");
  return Ok{};
}

Status check_user_agent(const std::string& ua) {
  if (ua.empty() || has_control(ua) || ua.find('\t') != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument, "the user agent is empty or holds control characters");
  }
  if (ua.size() > 1024) return make_error(ErrorCode::kInvalidArgument, "the user agent is over 1024 bytes");
  return Ok{};
}

Status check_ca_cert(const std::string& path) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument, "ca-cert " + path + ": " + why);
  };
  std::ifstream in(path);
  if (!in || util::is_directory(path)) {
    return bad(util::is_directory(path) ? "is a folder, not a file" : std::string("cannot be read (") + std::strerror(errno) + ")");
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return bad("holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }
  return Ok{};
}

Status check_proxy(const std::string& proxy) {
  auto bad = [](const std::string& why) { return make_error(ErrorCode::kInvalidArgument, "proxy: " + why); };
  if (std::any_of(proxy.begin(), proxy.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f; })) {
    return bad("the URL holds spaces or control characters");
  }
  const size_t sep = proxy.find("://");
  if (sep != std::string::npos) {
    const std::string scheme = lower(proxy.substr(0, sep));
    for (const char* known : {"http", "https", "socks4", "socks4a", "socks5", "socks5h"}) {
      if (scheme == known) return Ok{};
    }
    return bad("unknown scheme '" + scheme + "' (http, https, socks4, socks4a, socks5 or socks5h)");
  }
  return Ok{};
}

Status check_token_rule_pattern(const std::string& pattern) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument, "token-rule '" + pattern + "': " + why);
  };
  if (pattern.empty()) return bad("needs a host name");
  for (unsigned char c : pattern) {
    if (c <= 0x20 || c == 0x7f) return bad("holds spaces or control characters");
  }
  const size_t sep = pattern.find("://");
  if (sep == std::string::npos) {
    if (pattern.find_first_of("/:@?#[]") != std::string::npos) {
      return bad("write a host name (or *.suffix), or a URL such as https://host:port");
    }
    if (pattern.find('*', pattern.rfind("*.", 0) == 0 ? 1 : 0) != std::string::npos) {
      return bad("'*' may only start a '*.suffix' pattern");
    }
    return Ok{};
  }
  const std::string scheme = lower(pattern.substr(0, sep));
  if (scheme != "http" && scheme != "https") return bad("only http:// and https:// may be named");
  auto h = parse_url(pattern);
  if (!h || !url_part(h.get(), CURLUPART_HOST)) return bad("not a valid URL");
  if (url_part(h.get(), CURLUPART_USER) || url_part(h.get(), CURLUPART_QUERY) ||
      url_part(h.get(), CURLUPART_FRAGMENT) ||
      url_part(h.get(), CURLUPART_PATH).value_or("/") != "/") {
    return bad("only a scheme, a host and a port may be named");
  }
  // Plain http is a deliberate choice, made for one port of one host.
  if (scheme == "http" && !url_part(h.get(), CURLUPART_PORT)) {
    return bad("a token goes over plain http only to a port written out (http://host:port)");
  }
  return Ok{};
}

bool token_rule_applies(const std::string& pattern, const std::string& url) {
  auto u = origin_of(url);
  if (!u) return false;
  if (pattern.find("://") != std::string::npos) {
    auto p = origin_of(pattern);
    return p && p->scheme == u->scheme && p->host == u->host && p->port == u->port;
  }
  return u->scheme == "https" && host_matches(u->host, pattern);
}

std::string redact_url(const std::string& url) {
  auto span = password_span(url);
  if (!span) return url;
  return url.substr(0, span->first) + "***" + url.substr(span->second);
}

std::optional<UrlPassword> split_url_password(const std::string& url) {
  auto span = password_span(url);
  if (!span) return std::nullopt;
  UrlPassword out;
  out.shown = redact_url(url);
  if (auto h = parse_url(url)) {
    out.password = url_part(h.get(), CURLUPART_PASSWORD, CURLU_URLDECODE).value_or("");
  } else {
    out.password = url.substr(span->first, span->second - span->first);
  }
  if (out.password.empty() && span->first == span->second) return std::nullopt;  // "user:@host"
  return out;
}

TransferUrl transfer_url(const std::string& source, const std::optional<std::string>& password) {
  TransferUrl out;
  out.url = source;
  if (!password) return out;
  auto h = parse_url(source);
  if (!h) return out;
  out.user = url_part(h.get(), CURLUPART_USER, CURLU_URLDECODE).value_or("");
  out.password = password;
  curl_url_set(h.get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(h.get(), CURLUPART_PASSWORD, nullptr, 0);
  if (auto bare = url_part(h.get(), CURLUPART_URL)) out.url = *bare;
  return out;
}

namespace {

// Whether the authority of a URL holds user info: an '@' in it, or a user curl finds.
bool has_user_info(const std::string& url) {
  const size_t sep = url.find("://");
  if (sep != std::string::npos) {
    const size_t start = sep + 3;
    const size_t end = url.find_first_of("/?#", start);
    if (url.find('@', start) < end) return true;
  }
  auto h = parse_url(url);
  return h && (url_part(h.get(), CURLUPART_USER) || url_part(h.get(), CURLUPART_PASSWORD));
}

// The URL as curl writes it back (scheme and host in lower case, a default port dropped),
// without user info; the text itself when curl cannot parse it. Spellings of one URL that differ
// in case or in a written default port compare equal.
std::string normal_url(const std::string& url) {
  auto h = parse_url(url);
  if (!h) return url;
  curl_url_set(h.get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(h.get(), CURLUPART_PASSWORD, nullptr, 0);
  auto out = url_part(h.get(), CURLUPART_URL, CURLU_NO_DEFAULT_PORT);
  if (!out) return url;
  // curl keeps the host's case; origins compare it in lower case, and so does this.
  if (auto host = url_part(h.get(), CURLUPART_HOST)) {
    const size_t at = out->find(*host, out->find("://") + 3);
    if (at != std::string::npos) out->replace(at, host->size(), lower(*host));
  }
  return *out;
}

}  // namespace

Status check_mirrors(const std::vector<std::string>& mirrors, const std::string& source) {
  if (mirrors.size() > kMaxMirrors) {
    return make_error(ErrorCode::kInvalidArgument,
                      "at most " + std::to_string(kMaxMirrors) + " mirrors per job");
  }
  const std::string same_as_source = normal_url(source);
  std::vector<std::string> seen;
  seen.reserve(mirrors.size());
  for (const auto& m : mirrors) {
    if (auto st = check_source_url(m); !st) {
      return make_error(st.error().code, "mirror: " + st.error().message);
    }
    if (has_user_info(m)) {
      return make_error(ErrorCode::kInvalidArgument,
                        "a mirror cannot hold a user name or password: " + redact_url(m));
    }
    std::string n = normal_url(m);
    if (n == same_as_source) {
      return make_error(ErrorCode::kInvalidArgument,
                        "a mirror is the source itself: " + redact_url(m));
    }
    if (std::find(seen.begin(), seen.end(), n) != seen.end()) {
      return make_error(ErrorCode::kInvalidArgument, "a mirror is listed twice: " + redact_url(m));
    }
    seen.push_back(std::move(n));
  }
  return Ok{};
}

Status check_mirrors_on_origin(const std::vector<std::string>& mirrors, const std::string& source) {
  const std::string origin = url_origin(source);
  for (const auto& m : mirrors) {
    if (url_origin(m) != origin) {
      return make_error(ErrorCode::kInvalidArgument,
                        "the job holds a token, a password or request headers for " + origin +
                            ", which are never sent elsewhere: mirror " + redact_url(m) +
                            " is not on " + origin);
    }
  }
  return Ok{};
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
  if (request.options.access_token) {
    if (auto st = check_access_token(*request.options.access_token); !st) return st.error();
  }
  if (request.options.connections && (*request.options.connections < 1 || *request.options.connections > 16)) {
    return make_error(ErrorCode::kInvalidArgument, "connections must be 1 to 16");
  }
  if (request.options.headers.size() > kMaxHeaders) {
    return make_error(ErrorCode::kInvalidArgument, "at most " + std::to_string(kMaxHeaders) + " headers per job");
  }
  for (const auto& h : request.options.headers) {
    if (auto st = check_header(h); !st) return st.error();
  }
  if (request.options.user_agent) {
    if (auto st = check_user_agent(*request.options.user_agent); !st) return st.error();
  }
  if (request.options.limit_rate < 0 || request.options.limit_rate > util::kMaxRate) {
    return make_error(ErrorCode::kInvalidArgument, "limit_rate must be 0 to 2^40 bytes per second");
  }
  if (auto st = check_mirrors(request.options.mirrors, request.source); !st) return st.error();
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
    std::string roots;
    for (const auto& r : download_roots) roots += (roots.empty() ? "" : ", ") + r;
    return make_error(ErrorCode::kOutsideRoots,
                      "destination outside the download roots (" + roots + "): " + dest);
  }
  store::NewJob nj;
  nj.request = request;
  if (auto secret = split_url_password(request.source)) {
    // Kept apart like a token: the source that listings, events and logs show hides it.
    nj.request.source = std::move(secret->shown);
    nj.url_password = std::move(secret->password);
  }
  if (nj.request.options.sha256) nj.request.options.sha256 = lower(*nj.request.options.sha256);
  nj.dest_is_dir = facts.is_directory;
  if (!nj.dest_is_dir) {
    std::string base = dest.substr(dest.find_last_of('/') + 1);
    if (base == "." || base == "..") {
      return make_error(ErrorCode::kInvalidArgument, "the destination file name is not usable: " + dest);
    }
    // The .part file beside it must fit the folder's NAME_MAX too; found out now, not when the
    // transfer opens it.
    const size_t name_bytes = base.size() + std::string_view(".part").size();
    const size_t name_max = max_name_bytes(dest.substr(0, dest.size() - base.size()));
    if (name_bytes > name_max) {
      return make_error(ErrorCode::kInvalidArgument,
                        "the destination file name is too long: " + std::to_string(base.size()) +
                            " bytes, and with '.part' it must fit in " + std::to_string(name_max) +
                            " (NAME_MAX of its folder): " + dest);
    }
    nj.download_path = dest;
  }
  return nj;
}

}  // namespace fetchq::queue
