// fetchq: the command line. `get` runs a queue in-process; the rest speak to fetchqd.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/commands.h"
#include "fetchq/version.h"

int main(int argc, char** argv) {
  // Library logs go to standard error and stay quiet unless something is wrong.
  spdlog::set_default_logger(spdlog::stderr_color_st("fetchq"));
  spdlog::set_level(spdlog::level::err);
  spdlog::set_pattern("fetchq: %v");

  CLI::App app{"fetchq: a persistent, restartable download queue"};
  app.set_version_flag("--version", std::string("fetchq ") + fetchq::kVersion);
  app.require_subcommand(1);
  std::function<int()> run;
  fetchq::cli::add_get_command(app, &run);
  fetchq::cli::add_client_commands(app, &run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "fetchq: " << e.what() << " (see fetchq --help)\n";
    return fetchq::cli::kExitUsage;
  }
  if (!run) {
    std::cerr << "fetchq: nothing to do (see fetchq --help)\n";
    return fetchq::cli::kExitUsage;
  }
  try {
    return run();
  } catch (const std::exception& e) {
    fetchq::cli::print_error(e.what());
    return fetchq::cli::kExitFailure;
  }
}
