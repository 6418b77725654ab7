// The fetchq subcommands; each returns the process exit status of SPEC.md.
#pragma once

#include <CLI/CLI.hpp>

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

// One clear line on standard error.
void print_error(const std::string& message);

}  // namespace fetchq::cli
