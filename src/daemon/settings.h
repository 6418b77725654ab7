// fetchqd's settings: one table of typed settings (name, target field, default, bounds, help)
// drives the flags, the config file, the defaults and --help.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fetchq/queue.h"
#include "fetchq/result.h"

namespace fetchq::daemon {

// Every field starts at its setting's default from setting_table(); db and socket stay empty
// until fill_defaults() picks them from the environment.
struct Settings {
  Settings();
  std::string db;
  std::string socket;
  int max_parallel;
  std::vector<std::string> download_roots;
  std::string log_level;
  int connect_timeout_s;
  int stall_timeout_s;
  int max_attempts;
  int give_up_after_s;
  int checkpoint_interval_ms;
  int connections;
  int max_connections_per_host;
  int max_connections;
  long segment_threshold;
  long segment_min_size;
  int block_private_addresses;
  long event_retention;
  std::string limit_rate;  // "5M", "500k", "0" (util::parse_rate), checked by validate()
  std::vector<std::string> token_rules;  // "HOST env:VAR" or "HOST file:PATH"
  std::string ca_cert;                   // PEM file of CAs; empty: the system's
  std::string proxy;                     // empty: libcurl's *_proxy environment variables
  std::vector<std::string> rate_schedule;  // "HH:MM-HH:MM RATE" (parse_rate_window)
};

// One setting: how it is named in flags and files, the field its value goes to (the field's type
// says how the value is parsed: text, an integer within [min, max], or a list that each value
// appends to), its default as a value would be written in a config file, and its help line.
struct SettingInfo {
  using Field = std::variant<std::string Settings::*, int Settings::*, long Settings::*,
                             std::vector<std::string> Settings::*>;
  const char* name;  // the flag is --name, the config key is name (or with '_' for '-')
  Field field;
  const char* default_value;  // "" for a list, and for db and socket (see fill_defaults)
  long min = 0, max = 0;      // for integers
  const char* help = "";
};

// True when the setting takes an integer (an int or long field), false for text and lists.
bool takes_integer(const SettingInfo& info);

const std::vector<SettingInfo>& setting_table();
// The entry called `name` ('_' read as '-'), or null.
const SettingInfo* find_setting(std::string_view name);

// Applies `name = value` (from a flag or a config file line). Lists append.
Status apply_setting(Settings& s, const std::string& name, const std::string& value);
// Reads a config file: `name = value` lines, '#' comments, blank lines. When `missing_ok`, a
// file that does not exist is no error (*found says whether there was one).
Status load_config_file(Settings& s, const std::string& path, bool missing_ok = false,
                        bool* found = nullptr);
// The file read when --config is not given (read only if it exists):
// $CONFIGURATION_DIRECTORY/fetchqd.conf under systemd (ConfigurationDirectory=fetchq), else
// /etc/fetchq/fetchqd.conf for root, else $XDG_CONFIG_HOME/fetchq/fetchqd.conf (by default
// ~/.config/fetchq/fetchqd.conf).
std::string default_config_path();
// Fills the defaults that depend on the environment (systemd directories, XDG, root).
void fill_defaults(Settings& s);
// Checks the relations between settings once all are applied.
Status validate(const Settings& s);

// One entry of rate-schedule: from `start` to `end`, in minutes after local midnight, the
// queue's limit is `limit_rate` (0: none). A window whose end is not after its start runs past
// midnight ("22:00-06:00"; "00:00-00:00" is the whole day).
struct RateWindow {
  int start = 0;
  int end = 0;
  int64_t limit_rate = 0;
};
// "HH:MM-HH:MM RATE" (RATE as util::parse_rate takes it), or an error naming the entry.
Result<RateWindow> parse_rate_window(const std::string& text);
// The limit the schedule sets at `minute` (0 to 1439 after local midnight): the last window
// listed that holds it; nullopt outside every window (then the limit-rate setting holds).
std::optional<int64_t> scheduled_limit(const std::vector<RateWindow>& windows, int minute);

// Reads the tokens the rules name (from the environment or a file, never from the config text).
Result<std::vector<TokenRule>> load_token_rules(const std::vector<std::string>& rules);

}  // namespace fetchq::daemon
