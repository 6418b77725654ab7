// The `name = value` files of fetchqd (fetchqd.conf) and fetchq (~/.config/fetchq/config):
// one setting a line, '#' starts a comment line, a value may be wrapped in double quotes.
#pragma once

#include <functional>
#include <string>

#include "fetchq/result.h"

namespace fetchq::util {

// Calls `each(name, value, line)` for every setting of the file at `path`, in order; stops at
// the first error `each` returns. Errors name the file and line ("PATH:3: ..."). A file that
// cannot be read is a kIo error; when `missing_ok`, a file that does not exist is Ok and
// `each` is not called (*found, when given, says which).
Status read_config_file(const std::string& path,
                        const std::function<Status(const std::string& name, const std::string& value,
                                                   int line)>& each,
                        bool missing_ok = false, bool* found = nullptr);

}  // namespace fetchq::util
