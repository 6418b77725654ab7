// store::open: from a spec (a path or a URL-like name) to the backend that serves it.
#include "store/store.h"

#include <string_view>

#include "store/sqlite/sqlite_store.h"
#include "util/fs.h"

namespace fetchq::store {
namespace {

constexpr std::string_view kSqlitePrefix = "sqlite:";

// The scheme of "scheme://...", empty when the spec is no URL (then it is a path).
std::string_view url_scheme(std::string_view spec) {
  auto colon = spec.find("://");
  if (colon == std::string_view::npos || colon == 0) return {};
  for (size_t i = 0; i < colon; ++i) {
    char c = spec[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
    if (!ok) return {};
  }
  return spec.substr(0, colon);
}

}  // namespace

Result<std::unique_ptr<Store>> open(const std::string& spec, OpenOptions options) {
  std::string_view view(spec);
  if (view.starts_with(kSqlitePrefix)) {
    std::string path(view.substr(kSqlitePrefix.size()));
    if (path.empty()) return make_error(ErrorCode::kInvalidArgument, "the store spec \"sqlite:\" names no file");
    return open_sqlite_store(path, options);
  }
  if (auto scheme = url_scheme(view); !scheme.empty()) {
    if (scheme == "postgresql" || scheme == "postgres") {
      return make_error(ErrorCode::kInvalidArgument,
                        "postgresql stores are not built in this fetchq; give an SQLite file "
                        "(PATH or sqlite:PATH)");
    }
    return make_error(ErrorCode::kInvalidArgument,
                      "unknown kind of store \"" + std::string(scheme) +
                          "\"; give an SQLite file (PATH or sqlite:PATH)");
  }
  return open_sqlite_store(spec, options);
}

std::string absolute_spec(const std::string& spec) {
  std::string_view view(spec);
  if (view.starts_with(kSqlitePrefix)) {
    return std::string(kSqlitePrefix) + util::absolute_path(spec.substr(kSqlitePrefix.size()));
  }
  if (!url_scheme(view).empty()) return spec;
  return util::absolute_path(spec);
}

}  // namespace fetchq::store
