// fetchq's own config file: defaults for its flags, read from $FETCHQ_CONFIG, else
// $XDG_CONFIG_HOME/fetchq/config (by default ~/.config/fetchq/config). Same `name = value`
// lines as fetchqd.conf. Flags win, then the environment (FETCHQ_SOCKET), then the file.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "fetchq/result.h"

namespace fetchq::cli {

struct ConfigSetting {
  std::string name, value;
  int line = 0;
};

struct UserConfig {
  std::string path;
  bool found = false;
  std::vector<ConfigSetting> settings;  // in file order; a later line wins
};

// The names a config file may set: each is the long flag of one or more commands.
const std::vector<std::string>& user_config_names();

std::string user_config_path();

// Reads `path` (absent: an empty config). Unknown names and unreadable files are errors that
// name the file and line. A leading "~/" in a value stands for $HOME.
Result<UserConfig> load_user_config(const std::string& path);

// Gives each option of `cmd` that the command line left unset the file's value, as if typed
// (the option's own checks apply; an error names the file and line).
Status apply_user_config(const UserConfig& config, CLI::App& cmd);

}  // namespace fetchq::cli
