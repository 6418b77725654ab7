// Picks a safe on-disk file name for a download from Content-Disposition or the URL.
#include "files/file_name.h"

#include <cstdint>
#include <string>

namespace fetchq::files {
namespace {

constexpr std::string_view kDefaultName = "download";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict UTF-8 check (no overlongs, no surrogates, nothing above U+10FFFF), so
// a name cannot smuggle e.g. an overlong '/' past byte-level checks elsewhere.
bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b1 < lo || b1 > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < 0x80 || b > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

// Code points that change how a name is displayed without being seen: C1 controls, the
// bidirectional marks, embeddings, overrides and isolates (a name shown as "exe.txt" can be
// "txt.exe"), zero-width characters, line and paragraph separators and the BOM.
bool is_hidden_format_char(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || (cp >= 0x200B && cp <= 0x200F) ||
         (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2069) || cp == 0xFEFF;
}

// Expects valid UTF-8 (is_valid_utf8).
bool has_hidden_format_char(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t len = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
    if (s.size() - i < len) return true;
    uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    if (is_hidden_format_char(cp)) return true;
    i += len;
  }
  return false;
}

// Percent-decoding that refuses a broken escape ("%", "%4", "%zz"): such text was not encoded
// by anyone who meant a name, and kept literally it would be a name nobody asked for.
std::optional<std::string> percent_decode_strict(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (s.size() - i < 3) return std::nullopt;
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 2);
  for (char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x80) {
      out.push_back(c);
    } else {
      out.push_back(static_cast<char>(0xC0 | (b >> 6)));
      out.push_back(static_cast<char>(0x80 | (b & 0x3F)));
    }
  }
  return out;
}

// Decodes an RFC 8187 ext-value (charset'language'pct-encoded). nullopt when
// the charset is not one we understand or the bytes are not valid in it, so
// the caller can fall back to the plain filename parameter.
std::optional<std::string> decode_ext_value(std::string_view v) {
  const size_t q1 = v.find('\'');
  if (q1 == std::string_view::npos) return std::nullopt;
  const size_t q2 = v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos) return std::nullopt;
  const std::string_view charset = trim(v.substr(0, q1));
  const auto decoded = percent_decode_strict(trim(v.substr(q2 + 1)));
  if (!decoded || decoded->empty()) return std::nullopt;
  const std::string& bytes = *decoded;
  if (iequals(charset, "utf-8")) {
    if (!is_valid_utf8(bytes)) return std::nullopt;
    return bytes;
  }
  if (iequals(charset, "iso-8859-1")) return latin1_to_utf8(bytes);
  return std::nullopt;
}

// Reads a quoted-string starting just after the opening quote; `i` ends after
// the closing quote (or at the end for an unterminated string, tolerated
// because some servers send them).
std::string read_quoted(std::string_view v, size_t& i) {
  std::string out;
  while (i < v.size()) {
    const char c = v[i++];
    if (c == '"') break;
    if (c == '\\') {
      if (i >= v.size()) break;
      out.push_back(v[i++]);
      continue;
    }
    out.push_back(c);
  }
  return out;
}

// True for a WHATWG-style scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
bool is_scheme(std::string_view s) {
  if (s.empty() || !is_alpha(s[0])) return false;
  for (char c : s) {
    if (!is_alpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.') return false;
  }
  return true;
}

}  // namespace

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && s.size() - i >= 3) {
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::optional<std::string> filename_from_content_disposition(std::string_view value) {
  std::optional<std::string> plain;     // first filename=
  std::optional<std::string> extended;  // first decodable filename*=
  size_t i = 0;
  const size_t n = value.size();
  // Every iteration consumes at least one byte (';' or '=' or the value), so
  // the loop terminates on any input.
  while (i < n) {
    const size_t name_start = i;
    while (i < n && value[i] != '=' && value[i] != ';') ++i;
    const std::string_view name = trim(value.substr(name_start, i - name_start));
    if (i >= n) break;
    if (value[i] == ';') {  // disposition type or a bare flag: nothing to take
      ++i;
      continue;
    }
    ++i;  // '='
    while (i < n && is_space(value[i])) ++i;
    std::string param;
    if (i < n && value[i] == '"') {
      ++i;
      param = read_quoted(value, i);
      while (i < n && value[i] != ';') ++i;  // ignore junk after the closing quote
    } else {
      const size_t start = i;
      while (i < n && value[i] != ';') ++i;
      param = std::string(trim(value.substr(start, i - start)));
    }
    if (i < n) ++i;  // ';'

    if (iequals(name, "filename*")) {
      if (!extended) extended = decode_ext_value(param);
    } else if (iequals(name, "filename")) {
      if (!plain) plain = std::move(param);
    }
  }
  if (extended) return extended;
  return plain;
}

std::optional<std::string> filename_from_url(std::string_view url) {
  std::string_view rest = trim(url);
  const size_t sep = rest.find("://");
  if (sep != std::string_view::npos && is_scheme(rest.substr(0, sep))) {
    rest.remove_prefix(sep + 3);
    // The authority ends at the first '/', '?' or '#'; its text is never a name.
    const size_t end = rest.find_first_of("/?#");
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  }
  const size_t qf = rest.find_first_of("?#");
  if (qf != std::string_view::npos) rest = rest.substr(0, qf);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) return std::nullopt;
  const size_t slash = rest.rfind('/');
  const std::string_view segment = slash == std::string_view::npos ? rest : rest.substr(slash + 1);
  return percent_decode_strict(segment);
}

bool is_safe_file_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  bool only_dots_and_spaces = true;
  for (char c : name) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7F || c == '/' || c == '\\') return false;
    if (c != '.' && c != ' ') only_dots_and_spaces = false;
  }
  // Covers ".", ".." and names some file systems silently trim to nothing.
  if (only_dots_and_spaces) return false;
  // "C:evil" is drive-relative on Windows, so a drive prefix is never one component.
  if (name.size() >= 2 && is_alpha(name[0]) && name[1] == ':') return false;
  return is_valid_utf8(name) && !has_hidden_format_char(name);
}

std::string choose_file_name(std::optional<std::string_view> content_disposition,
                             std::string_view url) {
  if (content_disposition) {
    if (auto name = filename_from_content_disposition(*content_disposition);
        name && is_safe_file_name(*name)) {
      return std::move(*name);
    }
  }
  if (auto name = filename_from_url(url); name && is_safe_file_name(*name)) {
    return std::move(*name);
  }
  return std::string(kDefaultName);
}

std::string numbered_file_name(std::string_view name, int n) {
  const std::string suffix = "." + std::to_string(n);
  std::string_view stem = name;
  std::string_view ext;
  // A leading dot marks a hidden file, not an extension; a trailing dot is not one either.
  const size_t dot = name.rfind('.');
  if (dot != std::string_view::npos && dot > 0 && dot + 1 < name.size()) {
    stem = name.substr(0, dot);
    ext = name.substr(dot);
  }
  // An extension too long to keep alongside a 1-byte stem is treated as part of the stem.
  if (ext.size() + suffix.size() + 1 > kMaxNameBytes) {
    stem = name;
    ext = {};
  }
  const size_t budget = kMaxNameBytes - suffix.size() - ext.size();
  if (stem.size() > budget) {
    size_t cut = budget;
    // Back up over UTF-8 continuation bytes so a multi-byte character is not split.
    while (cut > 0 && (static_cast<unsigned char>(stem[cut]) & 0xC0) == 0x80) --cut;
    if (cut == 0) cut = budget;  // not UTF-8 at all: a byte cut is the best we can do
    stem = stem.substr(0, cut);
  }
  std::string out;
  out.reserve(stem.size() + suffix.size() + ext.size());
  out.append(stem).append(suffix).append(ext);
  return out;
}

}  // namespace fetchq::files
