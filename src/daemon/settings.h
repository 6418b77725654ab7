// fetchqd's settings: one table of typed settings (name, default, bounds) drives the flags, the
// config file and validation.
#pragma once

#include <string>
#include <vector>

#include "fetchq/queue.h"
#include "fetchq/result.h"

namespace fetchq::daemon {

struct Settings {
  std::string db;
  std::string socket;
  int max_parallel = 5;
  std::vector<std::string> download_roots;
  std::string log_level = "info";
  int connect_timeout_s = 30;
  int stall_timeout_s = 30;
  int max_attempts = 8;
  int give_up_after_s = 3600;
  int checkpoint_interval_ms = 2000;
  int block_private_addresses = 0;
  long event_retention = 1000000;
  std::vector<std::string> token_rules;  // "HOST env:VAR" or "HOST file:PATH"
};

// What one setting is: how it is named in flags and files, its bounds, how it is stored.
struct SettingInfo {
  const char* name;  // the flag is --name, the config key is name
  const char* help;
  enum class Kind { kString, kInt, kStringList } kind;
  long min = 0, max = 0;  // for kInt
};

const std::vector<SettingInfo>& setting_table();

// Applies `name = value` (from a flag or a config file line). Lists append.
Status apply_setting(Settings& s, const std::string& name, const std::string& value);
// Reads a config file: `name = value` lines, '#' comments, blank lines.
Status load_config_file(Settings& s, const std::string& path);
// Fills the defaults that depend on the environment (systemd directories, XDG, root).
void fill_defaults(Settings& s);
// Checks the relations between settings once all are applied.
Status validate(const Settings& s);

// Reads the tokens the rules name (from the environment or a file, never from the config text).
Result<std::vector<TokenRule>> load_token_rules(const std::vector<std::string>& rules);

}  // namespace fetchq::daemon
