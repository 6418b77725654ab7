// The fetchq subcommands; each returns the process exit status of SPEC.md.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace fetchq::cli {

enum ExitCode {
  kExitOk = 0,
  kExitJobFailed = 1,
  kExitUsage = 2,
  kExitNoDaemon = 3,
  kExitFailure = 4,
  kExitTimeout = 5,
  kExitInterrupted = 130,
};

// Registers `get` on app; *run is set to the function that runs it once parsed.
void add_get_command(CLI::App& app, std::function<int()>* run);
// Registers the commands that talk to fetchqd (and list/show/events --db).
void add_client_commands(CLI::App& app, std::function<int()>* run);

// Registers `config`, which prints the settings in effect and where each comes from.
void add_config_command(CLI::App& app, std::function<int()>* run);

// One clear line on standard error.
void print_error(const std::string& message);

// An age such as "90s", "30m", "12h", "7d" or "2w" in seconds; nullopt for anything else.
std::optional<int64_t> parse_age(const std::string& text);

// The state file of `fetchq get` without --state: $XDG_STATE_HOME/fetchq/get.db (by default
// ~/.local/state/fetchq/get.db).
std::string default_state_path();

}  // namespace fetchq::cli
