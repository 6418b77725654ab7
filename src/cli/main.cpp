// fetchq: the command line. `get` runs a queue in-process; the rest speak to fetchqd.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "cli/user_config.h"
#include "fetchq/version.h"
#include "util/allocator.h"

namespace {

// Edits (insert, delete, substitute) that turn a into b.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "unknown command 'lst'; did you mean list? (the commands are ...)": one line.
std::string unknown_command(const CLI::App& app, const std::string& word) {
  std::vector<std::string> names, near;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    names.push_back(sub->get_name());
    const auto& n = names.back();
    if (edit_distance(word, n) <= std::max<size_t>(1, n.size() / 3) ||
        (word.size() >= 2 && n.rfind(word, 0) == 0)) {
      near.push_back(n);
    }
  }
  std::string out = "unknown command '" + word + "'";
  if (!near.empty()) {
    out += "; did you mean ";
    for (size_t i = 0; i < near.size(); ++i) out += (i ? (i + 1 == near.size() ? " or " : ", ") : "") + near[i];
    out += "?";
  }
  out += " (the commands are";
  for (const auto& n : names) out += " " + n;
  return out + ")";
}

}  // namespace

int main(int argc, char** argv) {
  fetchq::util::tune_allocator();
  // Library logs go to standard error and stay quiet unless something is wrong.
  spdlog::set_default_logger(spdlog::stderr_color_st("fetchq"));
  spdlog::set_level(spdlog::level::err);
  spdlog::set_pattern("fetchq: %v");
  // FETCHQ_LOG_LEVEL=debug (info, warn, ...) shows what the engine decides, on standard error.
  if (const char* level = std::getenv("FETCHQ_LOG_LEVEL"); level && *level) {
    spdlog::set_level(spdlog::level::from_str(level));
  }

  CLI::App app{"fetchq: a persistent, restartable download queue"};
  app.set_version_flag("--version", std::string("fetchq ") + fetchq::kVersion);
  app.require_subcommand(1);
  std::function<int()> run;
  fetchq::cli::add_get_command(app, &run);
  fetchq::cli::add_client_commands(app, &run);
  fetchq::cli::add_config_command(app, &run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Name the command's own help when the words start with one, else the command list.
    std::string first = argc > 1 ? argv[1] : "";
    const CLI::App* sub = nullptr;
    if (!first.empty() && first[0] != '-') {
      try {
        sub = app.get_subcommand(first);
      } catch (const CLI::OptionNotFound&) {
        std::cerr << "fetchq: " << unknown_command(app, first) << "\n";
        return fetchq::cli::kExitUsage;
      }
    }
    std::cerr << "fetchq: " << e.what() << " (see fetchq " << (sub ? sub->get_name() + " " : "")
              << "--help)\n";
    return fetchq::cli::kExitUsage;
  }
  // The config file fills what the command line left unset.
  auto config = fetchq::cli::load_user_config(fetchq::cli::user_config_path());
  if (!config) {
    fetchq::cli::print_error(config.error().message);
    return fetchq::cli::kExitUsage;
  }
  for (CLI::App* sub : app.get_subcommands()) {
    if (auto st = fetchq::cli::apply_user_config(config.value(), *sub); !st) {
      fetchq::cli::print_error(st.error().message);
      return fetchq::cli::kExitUsage;
    }
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
