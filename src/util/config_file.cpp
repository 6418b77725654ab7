// Reader of `name = value` config files.
#include "util/config_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "util/strings.h"

namespace fetchq::util {

Status read_config_file(const std::string& path,
                        const std::function<Status(const std::string&, const std::string&, int)>& each,
                        bool missing_ok, bool* found) {
  if (found) *found = false;
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    if (missing_ok && err == ENOENT) return Ok{};
    return make_error(ErrorCode::kIo,
                      "cannot read the config file " + path + ": " + std::strerror(err));
  }
  if (found) *found = true;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string t(trim(line));
    if (t.empty() || t[0] == '#') continue;
    const auto eq = t.find('=');
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    if (eq == std::string::npos) {
      return make_error(ErrorCode::kInvalidArgument, where + "expected 'name = value'");
    }
    std::string value(trim(t.substr(eq + 1)));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    if (auto st = each(std::string(trim(t.substr(0, eq))), value, lineno); !st) {
      return make_error(st.error().code, where + st.error().message);
    }
  }
  if (in.bad()) {
    return make_error(ErrorCode::kIo, "cannot read the config file " + path + ": " +
                                          std::strerror(errno));
  }
  return Ok{};
}

}  // namespace fetchq::util
