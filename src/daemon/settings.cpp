// The settings table and the config file reader of fetchqd.
#include "daemon/settings.h"

#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>

#include "queue/request_check.h"
#include "util/fs.h"

namespace fetchq::daemon {

const std::vector<SettingInfo>& setting_table() {
  using K = SettingInfo::Kind;
  static const std::vector<SettingInfo> table = {
      {"db", "database file", K::kString},
      {"socket", "control socket path", K::kString},
      {"max-parallel", "downloads at once", K::kInt, 1, 10000},
      {"download-root", "folder clients may write under (repeatable)", K::kStringList},
      {"log-level", "trace, debug, info, warn, error or off", K::kString},
      {"connect-timeout", "seconds to wait for a connection", K::kInt, 1, 3600},
      {"stall-timeout", "seconds without a byte before a retry", K::kInt, 1, 3600},
      {"max-attempts", "failures in a row without progress before a job ends in error", K::kInt, 1, 1000},
      {"give-up-after", "seconds of failing without progress before a job ends in error", K::kInt, 1, 30 * 86400},
      {"checkpoint-interval-ms", "how often running jobs are synced and recorded", K::kInt, 100, 600000},
      {"event-retention", "events kept in the log (the newest N; a follower asking for older ones is told where the log starts); 0 keeps all", K::kInt, 0, 1000000000},
      {"block-private-addresses", "1: refuse loopback, private and link-local addresses", K::kInt, 0, 1},
      {"token-rule", "'PATTERN env:VAR' or 'PATTERN file:PATH': a Bearer token for https jobs to PATTERN (host, *.suffix, https://host:port; http://host:port for plain http)", K::kStringList},
  };
  return table;
}

static const SettingInfo* find(const std::string& name) {
  std::string n = name;
  for (auto& c : n) {
    if (c == '_') c = '-';
  }
  for (const auto& s : setting_table()) {
    if (n == s.name) return &s;
  }
  return nullptr;
}

Status apply_setting(Settings& s, const std::string& name, const std::string& value) {
  const SettingInfo* info = find(name);
  if (!info) return make_error(ErrorCode::kInvalidArgument, "unknown setting '" + name + "'");
  long n = 0;
  if (info->kind == SettingInfo::Kind::kInt) {
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || p != value.data() + value.size() || n < info->min || n > info->max) {
      return make_error(ErrorCode::kInvalidArgument,
                        std::string(info->name) + " must be an integer from " +
                            std::to_string(info->min) + " to " + std::to_string(info->max) +
                            ", not '" + value + "'");
    }
  }
  std::string key = info->name;
  if (key == "db") s.db = value;
  else if (key == "socket") s.socket = value;
  else if (key == "max-parallel") s.max_parallel = static_cast<int>(n);
  else if (key == "download-root") s.download_roots.push_back(value);
  else if (key == "log-level") s.log_level = value;
  else if (key == "connect-timeout") s.connect_timeout_s = static_cast<int>(n);
  else if (key == "stall-timeout") s.stall_timeout_s = static_cast<int>(n);
  else if (key == "max-attempts") s.max_attempts = static_cast<int>(n);
  else if (key == "give-up-after") s.give_up_after_s = static_cast<int>(n);
  else if (key == "checkpoint-interval-ms") s.checkpoint_interval_ms = static_cast<int>(n);
  else if (key == "event-retention") s.event_retention = n;
  else if (key == "block-private-addresses") s.block_private_addresses = static_cast<int>(n);
  else if (key == "token-rule") s.token_rules.push_back(value);
  return Ok{};
}

static std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

Status load_config_file(Settings& s, const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::kIo, "cannot read the config file " + path);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    auto eq = t.find('=');
    if (eq == std::string::npos) {
      return make_error(ErrorCode::kInvalidArgument,
                        path + ":" + std::to_string(lineno) + ": expected 'name = value'");
    }
    std::string value = trim(t.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    auto st = apply_setting(s, trim(t.substr(0, eq)), value);
    if (!st) return make_error(st.error().code, path + ":" + std::to_string(lineno) + ": " + st.error().message);
  }
  return Ok{};
}

static std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

void fill_defaults(Settings& s) {
  if (s.db.empty()) {
    if (auto d = env("STATE_DIRECTORY"); !d.empty()) {
      s.db = d.substr(0, d.find(':')) + "/fetchq.db";
    } else if (::geteuid() == 0) {
      s.db = "/var/lib/fetchq/fetchq.db";
    } else if (auto x = env("XDG_STATE_HOME"); !x.empty()) {
      s.db = x + "/fetchq/fetchq.db";
    } else {
      s.db = env("HOME") + "/.local/state/fetchq/fetchq.db";
    }
  }
  if (s.socket.empty()) {
    if (auto r = env("RUNTIME_DIRECTORY"); !r.empty()) {
      s.socket = r.substr(0, r.find(':')) + "/fetchqd.sock";
    } else if (auto f = env("FETCHQ_SOCKET"); !f.empty()) {
      s.socket = f;
    } else if (::geteuid() == 0 || env("XDG_RUNTIME_DIR").empty()) {
      s.socket = "/run/fetchq/fetchqd.sock";
    } else {
      s.socket = env("XDG_RUNTIME_DIR") + "/fetchq/fetchqd.sock";
    }
  }
}

Status validate(const Settings& s) {
  static const char* levels[] = {"trace", "debug", "info", "warn", "error", "off"};
  bool ok = false;
  for (auto l : levels) ok = ok || s.log_level == l;
  if (!ok) return make_error(ErrorCode::kInvalidArgument, "log-level must be trace, debug, info, warn, error or off");
  for (const auto& r : s.download_roots) {
    if (r.empty() || r[0] != '/') {
      return make_error(ErrorCode::kInvalidArgument, "download-root must be an absolute path: '" + r + "'");
    }
    if (!util::is_directory(r)) {
      return make_error(ErrorCode::kInvalidArgument, "download-root is not a folder: " + r);
    }
  }
  return Ok{};
}

Result<std::vector<TokenRule>> load_token_rules(const std::vector<std::string>& rules) {
  std::vector<TokenRule> out;
  for (const auto& r : rules) {
    auto sp = r.find_first_of(" \t");
    std::string host = r.substr(0, sp);
    std::string from = sp == std::string::npos ? "" : trim(r.substr(sp));
    std::string token;
    if (from.rfind("env:", 0) == 0) {
      const char* v = std::getenv(from.substr(4).c_str());
      if (!v || !*v) {
        return make_error(ErrorCode::kInvalidArgument,
                          "token-rule for " + host + ": the variable " + from.substr(4) + " is not set");
      }
      token = v;
    } else if (from.rfind("file:", 0) == 0) {
      std::ifstream in(from.substr(5));
      std::getline(in, token);
      token = trim(token);
      if (token.empty()) {
        return make_error(ErrorCode::kInvalidArgument,
                          "token-rule for " + host + ": cannot read a token from " + from.substr(5));
      }
    } else {
      return make_error(ErrorCode::kInvalidArgument,
                        "token-rule must be 'HOST env:VAR' or 'HOST file:PATH', not '" + host + " ...'");
    }
    if (auto st = queue::check_token_rule_pattern(host); !st) return st.error();
    if (auto st = queue::check_access_token(token); !st) {
      return make_error(ErrorCode::kInvalidArgument, "token-rule for " + host + ": " + st.error().message);
    }
    out.push_back({host, token});
  }
  return out;
}

}  // namespace fetchq::daemon
