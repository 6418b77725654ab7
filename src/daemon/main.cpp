// fetchqd: the queue as a long-lived service behind a Unix control socket.
#include <signal.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include "control/server.h"
#include "daemon/settings.h"
#include "daemon/systemd_notify.h"
#include "fetchq/queue.h"
#include "fetchq/version.h"
#include "store/store.h"
#include "util/allocator.h"
#include "util/fs.h"
#include "util/rate.h"
#include "util/signals.h"

namespace fetchq::daemon {
namespace {

// "%*": the sd-daemon priority prefix ("<3>" for an error), which journald reads off a line
// written to its stream and keeps as the entry's priority (journalctl -p).
class JournalPriority final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const char* p = "<6>";
    switch (msg.level) {
      case spdlog::level::critical:
        p = "<2>";
        break;
      case spdlog::level::err:
        p = "<3>";
        break;
      case spdlog::level::warn:
        p = "<4>";
        break;
      case spdlog::level::debug:
      case spdlog::level::trace:
        p = "<7>";
        break;
      default:
        break;
    }
    dest.append(p, p + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JournalPriority>();
  }
};

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("fetchqd");
  // Under systemd the journal stamps each line; "<N>" prefixes carry the priority.
  if (std::getenv("JOURNAL_STREAM")) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JournalPriority>('*').set_pattern("%*%l: %v");
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}

int run(int argc, char** argv) {
  CLI::App app{"fetchqd: the fetchq download queue service"};
  app.set_version_flag("--version", std::string("fetchqd ") + kVersion);
  std::vector<std::pair<std::string, std::string>> given;  // flags, applied after the config file
  std::string config;
  app.add_option("--config", config,
                 "config file of 'name = value' lines (default, read when it exists: " +
                     default_config_path() + ")");
  for (const auto& info : setting_table()) {
    std::string flag = std::string("--") + info.name;
    app.add_option_function<std::vector<std::string>>(
        flag,
        [&given, name = std::string(info.name)](const std::vector<std::string>& values) {
          for (const auto& v : values) given.emplace_back(name, v);
        },
        info.help)
        // One value each time; a flag may come again (lists add, others take the last).
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->type_name(takes_integer(info) ? "INT" : "TEXT")
        ->default_str(info.default_value);  // --help shows "=5"; nothing is applied from it
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "fetchqd: " << e.what() << " (see fetchqd --help)\n";
    return 2;
  }
  util::raise_open_file_limit();
  Settings s;
  // A --config that cannot be read is an error; the default file may be absent.
  const bool config_given = !config.empty();
  if (!config_given) config = default_config_path();
  bool config_found = false;
  if (auto st = load_config_file(s, config, !config_given, &config_found); !st) {
    std::cerr << "fetchqd: " << st.error().message << "\n";
    return 2;
  }
  for (const auto& [name, value] : given) {
    if (auto st = apply_setting(s, name, value); !st) {
      std::cerr << "fetchqd: " << st.error().message << "\n";
      return 2;
    }
  }
  fill_defaults(s);
  if (auto st = validate(s); !st) {
    std::cerr << "fetchqd: " << st.error().message << "\n";
    return 2;
  }
  // The database spec is checked before anything is created on disk (the same parser as
  // `fetchq get --state` and `fetchq --db`).
  auto where = store::locate(s.db);
  if (!where) {
    std::cerr << "fetchqd: --db: " << where.error().message << "\n";
    return 2;
  }
  const std::string db_file = where.value().path;
  if (util::absolute_path(s.socket) == util::absolute_path(db_file)) {
    std::cerr << "fetchqd: --socket and --db name the same file (" << s.db << ")\n";
    return 2;
  }
  setup_logging(s.log_level);

  // Signals are taken by this thread alone, synchronously.
  const sigset_t sigs = util::block_signals({SIGTERM, SIGINT, SIGHUP});
  signal(SIGPIPE, SIG_IGN);

  QueueOptions qo;
  qo.db_path = s.db;
  qo.max_parallel = s.max_parallel;
  qo.download_roots = s.download_roots;
  qo.connect_timeout = std::chrono::seconds(s.connect_timeout_s);
  qo.stall_timeout = std::chrono::seconds(s.stall_timeout_s);
  qo.max_attempts = s.max_attempts;
  qo.give_up_after = std::chrono::seconds(s.give_up_after_s);
  qo.checkpoint_interval = std::chrono::milliseconds(s.checkpoint_interval_ms);
  qo.event_retention = s.event_retention;
  qo.connections = s.connections;
  qo.max_connections_per_host = s.max_connections_per_host;
  qo.max_connections = s.max_connections;
  qo.segment_threshold = s.segment_threshold;
  qo.segment_min_size = s.segment_min_size;
  qo.block_private_addresses = s.block_private_addresses != 0;
  qo.ca_cert = s.ca_cert.empty() ? "" : util::absolute_path(s.ca_cert);
  qo.proxy = s.proxy;
  qo.rate_limit = util::parse_rate(s.limit_rate, nullptr).value_or(0);  // validate() checked it
  auto rules = load_token_rules(s.token_rules);
  if (!rules) {
    spdlog::error("{}", rules.error().message);
    return 2;
  }
  qo.token_rules = std::move(rules.value());
  control::ControlServer* server_ptr = nullptr;
  std::atomic<control::ControlServer*> server_for_changes{nullptr};
  qo.on_change = [&server_for_changes] {
    if (auto* srv = server_for_changes.load()) srv->notify_change();
  };
  if (auto st = util::make_parent_dirs(db_file); !st) {
    spdlog::error("{}", st.error().message);
    return 4;
  }
  auto opened = DownloadQueue::open(qo);
  if (!opened) {
    spdlog::error("cannot start: {}", opened.error().message);
    return opened.error().code == ErrorCode::kBusy ? 3 : 4;
  }
  auto queue = std::move(opened.value());
  // rate-schedule: the limit of the window that holds the local time, else limit-rate. It is
  // applied at start and whenever the time moves into another window (checked at every wake
  // of the loop below, at least every 5 s); a `fetchq limit` in between holds until then.
  std::vector<RateWindow> windows;
  for (const auto& w : s.rate_schedule) windows.push_back(parse_rate_window(w).value());
  std::optional<std::optional<int64_t>> scheduled;  // what the schedule asked last; none yet
  auto follow_schedule = [&] {
    if (windows.empty()) return;
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    ::localtime_r(&now, &local);
    auto want = scheduled_limit(windows, local.tm_hour * 60 + local.tm_min);
    if (scheduled && *scheduled == want) return;
    scheduled = want;
    const int64_t limit = want.value_or(qo.rate_limit);
    if (auto st = queue->set_rate_limit(limit); !st) {
      spdlog::warn("rate-schedule: {}", st.error().message);
    }
    spdlog::info("rate-schedule: limit {} bytes/s{}", limit,
                 want ? "" : " (limit-rate: the time is outside every window)");
  };
  follow_schedule();
  control::ServerOptions so;
  so.socket_path = s.socket;
  auto listening = control::ControlServer::listen(so, queue.get());
  if (!listening) {
    spdlog::error("cannot start: {}", listening.error().message);
    return 4;
  }
  auto server = std::move(listening.value());
  server_ptr = server.get();
  server_for_changes = server_ptr;
  server->start();
  spdlog::info("fetchqd {} ready: database {}, socket {}, {} at once{}, config {}", kVersion, s.db,
               s.socket, s.max_parallel,
               s.download_roots.empty() ? ", no download roots (any folder)" : "",
               config_found ? config : "none (" + config + " does not exist)");
  Notifier notify;
  notify.ready();

  for (;;) {
    timespec ts{};
    auto interval = notify.watchdog_interval();
    auto wait = interval.count() > 0 ? std::min<std::chrono::milliseconds>(interval, std::chrono::seconds(5))
                                     : std::chrono::milliseconds(5000);
    ts.tv_sec = wait.count() / 1000;
    ts.tv_nsec = (wait.count() % 1000) * 1000000;
    int sig = sigtimedwait(&sigs, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("signal {}: checkpointing running jobs and stopping", sig);
      break;
    }
    if (sig == SIGHUP) spdlog::info("SIGHUP: nothing to reload; settings apply at start");
    follow_schedule();
    notify.watchdog();
    auto st = queue->stats();
    notify.status(std::to_string(st.running) + " running, " + std::to_string(st.waiting) +
                  " waiting, " + std::to_string(st.completed) + " completed, " +
                  std::to_string(st.error) + " failed; " +
                  std::to_string(static_cast<long long>(st.bytes_per_second)) + " B/s");
  }
  notify.stopping();
  server_for_changes = nullptr;
  server->stop();
  queue->shutdown();
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace fetchq::daemon

int main(int argc, char** argv) {
  fetchq::util::tune_allocator();
  try {
    return fetchq::daemon::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "fetchqd: " << e.what() << "\n";
    return 4;
  }
}
