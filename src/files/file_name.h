// Picks a safe on-disk file name for a download from Content-Disposition or the URL.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace fetchq::files {

// Max bytes of a chosen name: leaves room for ".part" and a ".NNNN" rename suffix under NAME_MAX 255.
inline constexpr size_t kMaxNameBytes = 240;

// Parses a Content-Disposition header value (RFC 6266). Returns the decoded
// filename* (RFC 8187: charset'lang'pct-encoded; UTF-8 or ISO-8859-1, the
// latter converted to UTF-8) if present and decodable to a non-empty string
// (a broken escape such as "%" or "%zz" makes it undecodable),
// else the filename parameter (quoted-string with backslash escapes, or token),
// else nullopt. Parameter names are case-insensitive; whitespace is tolerated.
// Does NOT judge safety. Never throws (other than std::bad_alloc), never loops.
std::optional<std::string> filename_from_content_disposition(std::string_view value);

// Last non-empty segment of the URL's path (scheme://authority, query and
// fragment stripped first), percent-decoded. nullopt if there is none, or if
// its percent-encoding is broken ("%", "%zz"): such a segment is no safe name.
std::optional<std::string> filename_from_url(std::string_view url);

// True when `name` is usable as-is as one file name inside the destination
// folder: non-empty, not "." or "..", no '/', '\\', NUL or control chars
// (< 0x20, 0x7F), no drive prefix like "C:", valid UTF-8, at most
// kMaxNameBytes bytes, and not made only of dots and spaces. No invisible
// format characters either: C1 controls, bidirectional marks, overrides and
// isolates (U+061C, U+200E/F, U+202A..E, U+2066..9), zero-width characters,
// U+2028/9 and the BOM, which make a name read as something it is not.
bool is_safe_file_name(std::string_view name) noexcept;

// The SPEC rule: safe header name, else safe URL name, else "download".
std::string choose_file_name(std::optional<std::string_view> content_disposition,
                             std::string_view url);

// For if_exists=rename: inserts ".n" before the LAST extension:
// "a.tar.gz" -> "a.tar.1.gz", "readme" -> "readme.1", ".bashrc" -> ".bashrc.1".
// Keeps the result <= kMaxNameBytes by shortening the stem on a UTF-8 boundary.
std::string numbered_file_name(std::string_view name, int n);

// Percent-decodes %XX; invalid escapes are kept literally.
std::string percent_decode(std::string_view s);

}  // namespace fetchq::files
