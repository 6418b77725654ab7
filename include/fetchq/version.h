// fetchq's version, as sent in the User-Agent and shown by `stats`.
#pragma once

namespace fetchq {
inline constexpr const char* kVersion = "0.1.0";
}
