// Human and JSON renderings of jobs for the command line.
#include "cli/output.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

namespace fetchq::cli {

std::string human_bytes(double b) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024 && u < 5) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%.0f %s", b, units[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", b, units[u]);
  }
  return buf;
}

std::string human_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--";
  long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  } else if (t >= 60) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lds", t);
  }
  return buf;
}

std::string job_name(const Job& job) {
  const std::string& p = job.download_path ? *job.download_path : job.source;
  auto cut = p.find_first_of("?#", p.find("://") == std::string::npos ? 0 : p.find("://") + 3);
  std::string s = p.substr(0, cut);
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  auto slash = s.find_last_of('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

static std::string fit(std::string s, size_t width) {
  if (s.size() <= width) return s + std::string(width - s.size(), ' ');
  if (width <= 1) return s.substr(0, width);
  return s.substr(0, width - 1) + "~";
}

std::string progress_line(const Job& job, double rate, int width) {
  char right[96];
  double pct = job.total_bytes > 0 ? 100.0 * static_cast<double>(job.bytes) / static_cast<double>(job.total_bytes) : -1;
  std::string size = job.total_bytes > 0 ? human_bytes(static_cast<double>(job.bytes)) + "/" +
                                               human_bytes(static_cast<double>(job.total_bytes))
                                         : human_bytes(static_cast<double>(job.bytes));
  std::string eta = job.total_bytes > 0 && rate > 0
                        ? human_duration(static_cast<double>(job.total_bytes - job.bytes) / rate)
                        : "--";
  // rate < 0: not running, so no rate and no time left.
  std::string speed = rate >= 0 ? human_bytes(rate) + "/s" : "";
  if (rate < 0) eta = "";
  std::snprintf(right, sizeof right, " %5s %21s %13s %7s",
                pct >= 0 ? (std::to_string(static_cast<int>(pct)) + "%").c_str() : "",
                size.c_str(), speed.c_str(), eta.c_str());
  int rest = width - static_cast<int>(std::string(right).size());
  int name_w = std::max(10, std::min(40, rest / 2));
  int bar_w = std::max(0, rest - name_w - 3);
  std::string bar;
  if (bar_w > 0) {
    int filled = pct >= 0 ? static_cast<int>(bar_w * pct / 100.0) : 0;
    bar = " [" + std::string(static_cast<size_t>(filled), '#') +
          std::string(static_cast<size_t>(bar_w - filled), '.') + "]";
  }
  return fit(job_name(job), static_cast<size_t>(name_w)) + bar + right;
}

void print_jobs_json(const std::vector<Job>& jobs) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& j : jobs) arr.push_back(j);
  std::cout << arr.dump(2) << "\n";
}

void print_job_json(const Job& job) { std::cout << nlohmann::json(job).dump(2) << "\n"; }

void print_jobs_table(const std::vector<Job>& jobs, const std::vector<double>& rates) {
  std::printf("%6s  %-9s  %4s  %5s  %21s  %11s  %s\n", "ID", "STATUS", "PRIO", "DONE", "SIZE", "RATE", "NAME");
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Job& j = jobs[i];
    std::string pct = j.total_bytes > 0 ? std::to_string(100 * j.bytes / j.total_bytes) + "%"
                                        : (j.status == JobStatus::kCompleted ? "100%" : "-");
    std::string size = j.total_bytes > 0 ? human_bytes(static_cast<double>(j.bytes)) + "/" +
                                               human_bytes(static_cast<double>(j.total_bytes))
                                         : human_bytes(static_cast<double>(j.bytes));
    double rate = i < rates.size() ? rates[i] : 0;
    std::string r = rate > 0 ? human_bytes(rate) + "/s" : "-";
    std::printf("%6lld  %-9s  %4d  %5s  %21s  %11s  %s\n", static_cast<long long>(j.id),
                std::string(to_string(j.status)).c_str(), j.priority, pct.c_str(), size.c_str(),
                r.c_str(), job_name(j).c_str());
  }
}

void print_job_details(const Job& j) {
  auto opt = [](const std::optional<std::string>& v) { return v ? *v : std::string("-"); };
  std::printf("id:            %lld\n", static_cast<long long>(j.id));
  std::printf("status:        %s\n", std::string(to_string(j.status)).c_str());
  std::printf("source:        %s\n", j.source.c_str());
  std::printf("dest:          %s\n", j.dest.c_str());
  std::printf("download_path: %s\n", opt(j.download_path).c_str());
  std::printf("priority:      %d\n", j.priority);
  std::printf("bytes:         %lld of %lld\n", static_cast<long long>(j.bytes), static_cast<long long>(j.total_bytes));
  std::printf("attempts:      %d\n", j.attempts);
  std::printf("created:       %s\n", j.created_at.c_str());
  std::printf("started:       %s\n", opt(j.job_started).c_str());
  std::printf("ended:         %s\n", opt(j.job_ended).c_str());
  std::printf("access token:  %s\n", j.has_access_token ? "yes" : "no");
  if (j.error_type) std::printf("error:         %s: %s\n", j.error_type->c_str(), opt(j.error).c_str());
}

bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }
bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

int terminal_width() {
  struct winsize ws {};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 80;
}

}  // namespace fetchq::cli
