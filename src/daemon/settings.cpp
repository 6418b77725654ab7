// The settings table and the config file reader of fetchqd.
#include "daemon/settings.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <type_traits>

#include "queue/request_check.h"
#include "util/config_file.h"
#include "util/fs.h"
#include "util/rate.h"
#include "util/strings.h"

namespace fetchq::daemon {

namespace {

// std::visit over a setting's field: one handler per field type.
template <typename... F>
struct Overload : F... {
  using F::operator()...;
};
template <typename... F>
Overload(F...) -> Overload<F...>;

// Puts `value` into the setting's field of `s`: integers parsed and bounds-checked, lists
// appended to, text as it is.
Status assign(Settings& s, const SettingInfo& info, const std::string& value) {
  auto integer = [&](auto field) -> Status {
    long n = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || p != value.data() + value.size() || n < info.min || n > info.max) {
      return make_error(ErrorCode::kInvalidArgument,
                        std::string(info.name) + " must be an integer from " +
                            std::to_string(info.min) + " to " + std::to_string(info.max) +
                            ", not '" + value + "'");
    }
    s.*field = static_cast<std::remove_reference_t<decltype(s.*field)>>(n);
    return Ok{};
  };
  return std::visit(Overload{[&](std::string Settings::*field) -> Status {
                               s.*field = value;
                               return Ok{};
                             },
                             [&](std::vector<std::string> Settings::*field) -> Status {
                               (s.*field).push_back(value);
                               return Ok{};
                             },
                             [&](int Settings::*field) { return integer(field); },
                             [&](long Settings::*field) { return integer(field); }},
                    info.field);
}

}  // namespace

const std::vector<SettingInfo>& setting_table() {
  using S = Settings;
  constexpr long kDay = 86400;
  // clang-format off: one entry a line reads as a table.
  static const std::vector<SettingInfo> table = {
      // name                    field                      default    min  max
      {"db", &S::db, "", 0, 0, "database: PATH or sqlite:PATH"},
      {"socket", &S::socket, "", 0, 0, "control socket path"},
      {"max-parallel", &S::max_parallel, "5", 1, 10000, "downloads at once"},
      {"download-root", &S::download_roots, "", 0, 0,
       "folder clients may write under (repeatable)"},
      {"log-level", &S::log_level, "info", 0, 0, "trace, debug, info, warn, error or off"},
      {"connect-timeout", &S::connect_timeout_s, "30", 1, 3600, "seconds to wait for a connection"},
      {"stall-timeout", &S::stall_timeout_s, "30", 1, 3600,
       "seconds without a byte before a retry"},
      {"max-attempts", &S::max_attempts, "8", 1, 1000,
       "failures in a row without progress before a job ends in error"},
      {"give-up-after", &S::give_up_after_s, "3600", 1, 30 * kDay,
       "seconds of failing without progress before a job ends in error"},
      {"checkpoint-interval-ms", &S::checkpoint_interval_ms, "2000", 100, 600000,
       "how often running jobs are synced and recorded"},
      {"connections", &S::connections, "0", 0, 16,
       "connections one big file may use at once (a job's --connections wins; 1: one; 0: "
       "adaptive, one unless more connections bring a clearly higher rate)"},
      {"max-connections-per-host", &S::max_connections_per_host, "16", 1, 16,
       "most connections to one host, all jobs together; extra connections of a big file wait "
       "past it"},
      {"max-connections", &S::max_connections, "0", 0, 100000,
       "most connections of all jobs together (0: no limit); extra connections of a big file "
       "wait past it"},
      {"segment-threshold", &S::segment_threshold, "16777216", 1, 1L << 50,
       "bytes from which a file is fetched in segments over several connections"},
      {"segment-min-size", &S::segment_min_size, "1048576", 65536, 1L << 40,
       "smallest segment a split (work stealing) may leave"},
      {"event-retention", &S::event_retention, "1000000", 0, 1000000000,
       "events kept in the log (the newest N; a follower asking for older ones is told where "
       "the log starts); 0 keeps all"},
      {"limit-rate", &S::limit_rate, "0", 0, 0,
       "bytes per second over all downloads at once: 500k, 5M, 1.5M (0: no limit; "
       "`fetchq limit` changes it while fetchqd runs)"},
      {"rate-schedule", &S::rate_schedule, "", 0, 0,
       "'HH:MM-HH:MM RATE': the limit-rate from one time of day to another, local time "
       "(repeatable; the last window that holds the time wins; outside all, limit-rate)"},
      {"block-private-addresses", &S::block_private_addresses, "0", 0, 1,
       "1: refuse loopback, private and link-local addresses"},
      {"token-rule", &S::token_rules, "", 0, 0,
       "'PATTERN env:VAR' or 'PATTERN file:PATH': a Bearer token for https jobs to PATTERN "
       "(host, *.suffix, https://host:port; http://host:port for plain http)"},
      {"ca-cert", &S::ca_cert, "", 0, 0,
       "PEM file of CA certificates to trust instead of the system's (verification stays on)"},
      {"proxy", &S::proxy, "", 0, 0,
       "proxy URL for every transfer (default: $https_proxy, $http_proxy, $ALL_PROXY, $no_proxy)"},
  };
  // clang-format on
  return table;
}

Settings::Settings() {
  for (const auto& info : setting_table()) {
    // Lists start empty; every other field, the empty db and socket included, takes its
    // default through the same parser as a config file (a unit test checks each one parses).
    if (std::holds_alternative<std::vector<std::string> Settings::*>(info.field)) continue;
    [[maybe_unused]] auto st = assign(*this, info, info.default_value);
    assert(st.ok());
  }
}

bool takes_integer(const SettingInfo& info) {
  return std::holds_alternative<int Settings::*>(info.field) ||
         std::holds_alternative<long Settings::*>(info.field);
}

const SettingInfo* find_setting(std::string_view name) {
  std::string n(name);
  std::replace(n.begin(), n.end(), '_', '-');
  for (const auto& s : setting_table()) {
    if (n == s.name) return &s;
  }
  return nullptr;
}

Status apply_setting(Settings& s, const std::string& name, const std::string& value) {
  const SettingInfo* info = find_setting(name);
  if (!info) return make_error(ErrorCode::kInvalidArgument, "unknown setting '" + name + "'");
  return assign(s, *info, value);
}

Status load_config_file(Settings& s, const std::string& path, bool missing_ok, bool* found) {
  return util::read_config_file(
      path,
      [&s](const std::string& name, const std::string& value, int) {
        return apply_setting(s, name, value);
      },
      missing_ok, found);
}

static std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string default_config_path() {
  if (auto d = env("CONFIGURATION_DIRECTORY"); !d.empty()) {
    return d.substr(0, d.find(':')) + "/fetchqd.conf";
  }
  if (::geteuid() == 0) return "/etc/fetchq/fetchqd.conf";
  if (auto x = env("XDG_CONFIG_HOME"); !x.empty()) return x + "/fetchq/fetchqd.conf";
  return env("HOME") + "/.config/fetchq/fetchqd.conf";
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
  if (!ok)
    return make_error(ErrorCode::kInvalidArgument,
                      "log-level must be trace, debug, info, warn, error or off");
  if (std::string why; !util::parse_rate(s.limit_rate, &why)) {
    return make_error(ErrorCode::kInvalidArgument, "limit-rate: " + why);
  }
  for (const auto& w : s.rate_schedule) {
    if (auto r = parse_rate_window(w); !r) return r.error();
  }
  for (const auto& r : s.download_roots) {
    if (r.empty() || r[0] != '/') {
      return make_error(ErrorCode::kInvalidArgument,
                        "download-root must be an absolute path: '" + r + "'");
    }
    if (!util::is_directory(r)) {
      return make_error(ErrorCode::kInvalidArgument, "download-root is not a folder: " + r);
    }
  }
  if (!s.ca_cert.empty()) {
    if (auto st = queue::check_ca_cert(s.ca_cert); !st) return st;
  }
  if (!s.proxy.empty()) {
    if (auto st = queue::check_proxy(s.proxy); !st) return st;
  }
  return Ok{};
}

Result<RateWindow> parse_rate_window(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument, "rate-schedule '" + text + "': " + why);
  };
  std::string t(util::trim(text));
  auto sp = t.find_first_of(" \t");
  if (sp == std::string::npos) return bad("expected 'HH:MM-HH:MM RATE', e.g. '08:00-18:00 2M'");
  const std::string span = t.substr(0, sp);
  const std::string rate_text(util::trim(std::string_view(t).substr(sp)));
  // HH:MM, hours 00 to 23 (24:00 for the end of the day), minutes 00 to 59.
  auto minute_of = [](std::string_view hm) -> std::optional<int> {
    if (hm.size() != 5 || hm[2] != ':') return std::nullopt;
    for (size_t i : {0u, 1u, 3u, 4u}) {
      if (hm[i] < '0' || hm[i] > '9') return std::nullopt;
    }
    int h = (hm[0] - '0') * 10 + (hm[1] - '0');
    int m = (hm[3] - '0') * 10 + (hm[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0)) return std::nullopt;
    return (h * 60 + m) % (24 * 60);
  };
  const auto dash = span.find('-');
  if (dash == std::string::npos) return bad("the times must be HH:MM-HH:MM (00:00 to 24:00)");
  auto from = minute_of(std::string_view(span).substr(0, dash));
  auto to = minute_of(std::string_view(span).substr(dash + 1));
  if (!from || !to) return bad("the times must be HH:MM-HH:MM (00:00 to 24:00)");
  std::string why;
  auto rate = util::parse_rate(rate_text, &why);
  if (!rate) return bad(why);
  return RateWindow{*from, *to, *rate};
}

std::optional<int64_t> scheduled_limit(const std::vector<RateWindow>& windows, int minute) {
  std::optional<int64_t> out;
  for (const auto& w : windows) {
    bool in = w.start < w.end ? minute >= w.start && minute < w.end
                              : minute >= w.start || minute < w.end;
    if (in) out = w.limit_rate;
  }
  return out;
}

Result<std::vector<TokenRule>> load_token_rules(const std::vector<std::string>& rules) {
  std::vector<TokenRule> out;
  for (const auto& r : rules) {
    auto sp = r.find_first_of(" \t");
    std::string host = r.substr(0, sp);
    std::string from = sp == std::string::npos ? "" : std::string(util::trim(r.substr(sp)));
    std::string token;
    if (from.rfind("env:", 0) == 0) {
      const char* v = std::getenv(from.substr(4).c_str());
      if (!v || !*v) {
        return make_error(
            ErrorCode::kInvalidArgument,
            "token-rule for " + host + ": the variable " + from.substr(4) + " is not set");
      }
      token = v;
    } else if (from.rfind("file:", 0) == 0) {
      std::ifstream in(from.substr(5));
      std::getline(in, token);
      token = std::string(util::trim(token));
      if (token.empty()) {
        return make_error(
            ErrorCode::kInvalidArgument,
            "token-rule for " + host + ": cannot read a token from " + from.substr(5));
      }
    } else {
      return make_error(
          ErrorCode::kInvalidArgument,
          "token-rule must be 'HOST env:VAR' or 'HOST file:PATH', not '" + host + " ...'");
    }
    if (auto st = queue::check_token_rule_pattern(host); !st) return st.error();
    if (auto st = queue::check_access_token(token); !st) {
      return make_error(ErrorCode::kInvalidArgument,
                        "token-rule for " + host + ": " + st.error().message);
    }
    out.push_back({host, token});
  }
  return out;
}

}  // namespace fetchq::daemon
