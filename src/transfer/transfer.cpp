// Small HTTP helpers of the transfer engine: reason phrases, Retry-After, Content-Range.
#include "transfer/transfer.h"

#include <curl/curl.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include "util/strings.h"

namespace fetchq::transfer {

namespace {

// Standard base64 (padding optional); nullopt for any other character.
std::optional<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// 32 bytes as 64 lower-case hex digits; "" for any other length.
std::string sha256_hex(const std::optional<std::string>& raw) {
  if (!raw || raw->size() != 32) return "";
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : *raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value of `algorithm` in a comma-separated list of `name=value` members (names compared
// without case), or "".
std::string member(std::string_view list, std::string_view algorithm) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = trimmed(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) continue;
    std::string name(trimmed(item.substr(0, eq)));
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == algorithm) return std::string(trimmed(item.substr(eq + 1)));
  }
  return "";
}

}  // namespace

std::string url_origin(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> h(curl_url(), curl_url_cleanup);
  if (curl_url_set(h.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return {};
  auto part = [&](CURLUPart p, unsigned flags) {
    char* v = nullptr;
    std::string out;
    if (curl_url_get(h.get(), p, &v, flags) == CURLUE_OK && v) out = util::lower(v);
    curl_free(v);
    return out;
  };
  std::string host = part(CURLUPART_HOST, 0);
  while (!host.empty() && host.back() == '.') host.pop_back();
  return part(CURLUPART_SCHEME, 0) + "://" + host + ":" + part(CURLUPART_PORT, CURLU_DEFAULT_PORT);
}

std::optional<ServerDigest> server_digest(const std::map<std::string, std::string>& headers,
                                          int64_t total) {
  auto header = [&](const char* name) -> std::string_view {
    auto it = headers.find(name);
    return it == headers.end() ? std::string_view{} : std::string_view(it->second);
  };
  if (auto v = member(header("repr-digest"), "sha-256"); v.size() >= 2 && v.front() == ':' && v.back() == ':') {
    if (auto hex = sha256_hex(base64_decode(std::string_view(v).substr(1, v.size() - 2))); !hex.empty()) {
      return ServerDigest{hex, "Repr-Digest"};
    }
  }
  if (auto hex = sha256_hex(base64_decode(member(header("digest"), "sha-256"))); !hex.empty()) {
    return ServerDigest{hex, "Digest"};
  }
  std::string_view linked = trimmed(header("x-linked-etag"));
  if (linked.rfind("W/", 0) == 0) return std::nullopt;  // a weak tag names no bytes
  if (linked.size() >= 2 && linked.front() == '"' && linked.back() == '"') {
    linked = linked.substr(1, linked.size() - 2);
  }
  if (linked.size() == 64 && linked.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos) {
    const std::string_view size = trimmed(header("x-linked-size"));
    int64_t n = -1;
    if (!size.empty()) {
      auto [p, ec] = std::from_chars(size.data(), size.data() + size.size(), n);
      if (ec != std::errc() || p != size.data() + size.size()) return std::nullopt;
    }
    if (size.empty() || total <= 0 || n == total) {
      std::string hex(linked);
      for (auto& c : hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return ServerDigest{hex, "X-Linked-Etag"};
    }
  }
  return std::nullopt;
}

std::string_view reason_phrase(long code) {
  switch (code) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    default: return "Unknown Status";
  }
}

int name_as_part(util::Env& env, PartFile& file) {
  if (env.link_unnamed(file.fd(), file.folder().fd(), file.part_name().c_str()) != 0) return errno;
  file.set_named();
  return 0;
}

Failure disk_failure(const std::string& step, const std::string& path, int err) {
  Failure f;
  f.type = err == ENOSPC || err == EDQUOT ? "DiskFull" : "DiskError";
  f.message = step + " " + path + ": " + std::strerror(err);
  if (f.type == "DiskFull") f.message += " (free some space, then retry the job: it resumes)";
  f.disk = true;
  return f;
}

bool is_retryable_status(long code) {
  return code == 408 || code == 429 || code == 500 || code == 502 || code == 503 || code == 504;
}

std::optional<int64_t> parse_retry_after(const std::string& value, int64_t now_unix_ms) {
  size_t i = 0;
  while (i < value.size() && std::isspace(static_cast<unsigned char>(value[i]))) ++i;
  if (i == value.size()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(value[i]))) {
    int64_t secs = 0;
    auto [p, ec] = std::from_chars(value.data() + i, value.data() + value.size(), secs);
    if (ec == std::errc::result_out_of_range) return kMaxRetryAfterMs;
    if (ec != std::errc()) return std::nullopt;
    (void)p;
    return std::min(secs, kMaxRetryAfterMs / 1000) * 1000;  // no overflow on absurd values
  }
  time_t t = curl_getdate(value.c_str() + i, nullptr);
  if (t < 0) return std::nullopt;
  const int64_t now_s = now_unix_ms / 1000;
  if (static_cast<int64_t>(t) - now_s > kMaxRetryAfterMs / 1000) return kMaxRetryAfterMs;
  int64_t ms = static_cast<int64_t>(t) * 1000 - now_unix_ms;
  return ms < 0 ? 0 : ms;
}

static bool parse_int(std::string_view s, int64_t* out) {
  // Digits only: from_chars would also take a sign.
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s.front()))) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && *out >= 0;
}

bool content_length_agrees(std::string_view value, const std::string* before) {
  std::optional<int64_t> length;
  // Each of a list's lengths, all the same as the first seen.
  auto all_same = [&](std::string_view list) {
    for (;;) {
      const size_t comma = list.find(',');
      const std::string_view v = util::trim(list.substr(0, comma));
      int64_t n = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (v.empty() || v.front() == '-' || ec != std::errc() || p != v.data() + v.size())
        return false;
      if (length && *length != n) return false;
      length = n;
      if (comma == std::string_view::npos) return true;
      list.remove_prefix(comma + 1);
    }
  };
  return all_same(value) && (!before || all_same(*before));
}

std::string if_range_validator(const std::string& etag, const std::string& last_modified) {
  return !etag.empty() && etag.rfind("W/", 0) != 0 ? etag : last_modified;
}

bool names_another_version(const std::string& sent, const std::string& etag,
                           const std::string& last_modified) {
  if (sent.empty()) return false;
  // A strong ETag is a quoted string: only another strong ETag contradicts it (a server may
  // leave the ETag out of a 206, or weaken it, and still honour If-Range).
  if (sent.front() == '"') return !etag.empty() && etag.rfind("W/", 0) != 0 && etag != sent;
  // A date (or a tag a server sent unquoted): only another Last-Modified contradicts it.
  return !last_modified.empty() && last_modified != sent && etag != sent;
}

bool parse_content_range(const std::string& value, int64_t* start, int64_t* total) {
  int64_t end = -1;
  return parse_content_range(value, start, &end, total);
}

bool parse_content_range(const std::string& value, int64_t* start, int64_t* end, int64_t* total) {
  std::string_view v(value);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
  if (v.size() < 6) return false;
  for (size_t i = 0; i < 5; ++i) {
    if (std::tolower(static_cast<unsigned char>(v[i])) != "bytes"[i]) return false;
  }
  v.remove_prefix(5);
  if (v.empty() || (v.front() != ' ' && v.front() != '=')) return false;
  v.remove_prefix(1);
  auto slash = v.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view range = v.substr(0, slash), tot = v.substr(slash + 1);
  if (tot == "*") {
    *total = -1;
  } else if (!parse_int(tot, total)) {
    return false;
  }
  if (range == "*") {
    *start = -1;
    *end = -1;
    return true;
  }
  auto dash = range.find('-');
  if (dash == std::string_view::npos) return false;
  if (!parse_int(range.substr(0, dash), start) || !parse_int(range.substr(dash + 1), end)) {
    return false;
  }
  return *end >= *start;
}

}  // namespace fetchq::transfer
