// Human and JSON renderings of jobs for the command line.
#include "cli/output.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <functional>
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

size_t utf8_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The byte offset where code point `k` starts (s.size() past the end).
static size_t utf8_offset(const std::string& s, size_t k) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == k) return i;
      ++n;
    }
  }
  return s.size();
}

std::string shorten_middle(const std::string& name, size_t width) {
  const size_t n = utf8_width(name);
  if (n <= width) return name;
  if (width == 0) return "";
  if (width == 1) return "\xE2\x80\xA6";  // …
  const size_t tail = (width - 1) / 2;
  const size_t head = width - 1 - tail;
  return name.substr(0, utf8_offset(name, head)) + "\xE2\x80\xA6" + name.substr(utf8_offset(name, n - tail));
}

std::string shorten_keeping(const std::string& name, size_t width, size_t keep) {
  const size_t n = utf8_width(name);
  if (n <= width || width < 8) return shorten_middle(name, width);
  // Bytes before `keep` as code points (names are mostly ASCII; this keeps it right if not).
  size_t keep_cp = utf8_width(name.substr(0, std::min(keep, name.size())));
  const size_t room = width - 1;
  const size_t head = std::min(room, std::max({room / 2, std::min(keep_cp + 3, room - 3), keep_cp + 1}));
  const size_t tail = room - head;
  return name.substr(0, utf8_offset(name, head)) + "\xE2\x80\xA6" + name.substr(utf8_offset(name, n - tail));
}

std::string short_error_type(const std::string& type) {
  constexpr std::string_view kHttp = "HTTPError(";
  if (type.rfind(kHttp, 0) == 0 && type.size() >= kHttp.size() + 3) {
    return "HTTP " + type.substr(kHttp.size(), 3);
  }
  return type;
}

std::string jobs_table(const std::vector<Job>& jobs, const std::vector<JobRate>& rates, int width) {
  auto rate_of = [&](int64_t id) -> double {
    for (const auto& r : rates) {
      if (r.id == id) return r.bytes_per_second;
    }
    return -1;
  };
  bool any_error = false;
  for (const auto& j : jobs) any_error = any_error || j.status == JobStatus::kError;
  // The columns before NAME, in order; `drop` ranks which go first when the width is short
  // (0: never). SIZE gives way to a short form (the total only) before it goes.
  struct Column {
    std::string title;
    size_t width;
    bool left;
    int drop;
    std::vector<std::string> cells;
  };
  std::vector<Column> cols{{"ID", 6, false, 0, {}},      {"STATUS", 9, true, 0, {}},   {"PRIO", 4, false, 1, {}},
                           {"DONE", 4, false, 0, {}},    {"SIZE", 21, false, 2, {}},   {"RATE", 11, false, 4, {}},
                           {"LEFT", 6, false, 3, {}},    {"ERROR", 0, true, 5, {}}};
  Column total_only{"SIZE", 9, false, 6, {}};
  int64_t done_bytes = 0, total_bytes = 0;
  double total_rate = 0;
  std::vector<std::string> names;
  for (const auto& j : jobs) {
    std::string pct = j.total_bytes > 0 ? std::to_string(100 * j.bytes / j.total_bytes) + "%"
                                        : (j.status == JobStatus::kCompleted ? "100%" : "-");
    std::string size = j.total_bytes > 0 ? human_bytes(static_cast<double>(j.bytes)) + "/" +
                                               human_bytes(static_cast<double>(j.total_bytes))
                                         : human_bytes(static_cast<double>(j.bytes));
    double rate = j.status == JobStatus::kRunning ? rate_of(j.id) : -1;
    std::string left = rate > 0 && j.total_bytes > j.bytes
                           ? human_duration(static_cast<double>(j.total_bytes - j.bytes) / rate)
                           : "-";
    // On a terminal the error type is short ("HTTP 404"); a pipe gets it whole, as names.
    std::string err = j.status != JobStatus::kError ? ""
                      : width > 0                   ? short_error_type(j.error_type.value_or("-"))
                                                    : j.error_type.value_or("-");
    const std::string cells[] = {std::to_string(j.id), std::string(to_string(j.status)), std::to_string(j.priority),
                                 pct, size, rate >= 0 ? human_bytes(rate) + "/s" : "-", left, err};
    for (size_t c = 0; c < cols.size(); ++c) cols[c].cells.push_back(cells[c]);
    total_only.cells.push_back(human_bytes(static_cast<double>(j.total_bytes > 0 ? j.total_bytes : j.bytes)));
    cols[7].width = std::max(cols[7].width, width > 0 ? std::min<size_t>(20, err.size()) : err.size());
    names.push_back(job_name(j));
    if (rate > 0) total_rate += rate;
    done_bytes += j.bytes;
    total_bytes += j.total_bytes > 0 ? j.total_bytes : j.bytes;
  }
  if (!any_error) cols.erase(cols.begin() + 7);
  // Drop columns until NAME has room for 16 characters (or nothing is left to drop).
  constexpr size_t kMinName = 16;
  auto used = [&] {
    size_t n = 0;
    for (const auto& c : cols) n += c.width + 2;
    return n;
  };
  while (width > 0 && used() + kMinName > static_cast<size_t>(width)) {
    auto it = std::min_element(cols.begin(), cols.end(), [](const Column& x, const Column& y) {
      return (x.drop == 0 ? INT_MAX : x.drop) < (y.drop == 0 ? INT_MAX : y.drop);
    });
    if (it == cols.end() || it->drop == 0) break;
    if (it->title == "SIZE" && it->width > total_only.width) {
      *it = total_only;
    } else {
      cols.erase(it);
    }
  }
  const size_t name_room =
      width > 0 ? (static_cast<size_t>(width) > used() ? static_cast<size_t>(width) - used() : 1) : std::string::npos;
  auto pad = [](const std::string& v, size_t w, bool left) {
    std::string cut = shorten_middle(v, w);
    std::string fill(w - std::min(w, utf8_width(cut)), ' ');
    return left ? cut + fill : fill + cut;
  };
  auto row = [&](const std::function<std::string(const Column&)>& cell, const std::string& name) {
    std::string out;
    for (const auto& c : cols) out += pad(cell(c), c.width, c.left) + "  ";
    return out + name + "\n";
  };
  std::string out = row([](const Column& c) { return c.title; }, "NAME");
  (void)name_room;
  for (size_t i = 0; i < jobs.size(); ++i) {
    // Where this name first differs from its neighbours' is what must stay visible.
    size_t differs = 0;
    for (size_t k : {i - 1, i + 1}) {
      if (k >= names.size() || k == i) continue;
      size_t p = 0;
      while (p < names[i].size() && p < names[k].size() && names[i][p] == names[k][p]) ++p;
      differs = std::max(differs, p);
    }
    const std::string name = name_room == std::string::npos ? names[i] : shorten_keeping(names[i], name_room, differs);
    out += row([i](const Column& c) { return c.cells[i]; }, name);
  }
  out += "Sum: " + std::to_string(jobs.size()) + (jobs.size() == 1 ? " job, " : " jobs, ") +
         human_bytes(static_cast<double>(done_bytes)) + " of " + human_bytes(static_cast<double>(total_bytes));
  if (total_rate > 0) out += ", " + human_bytes(total_rate) + "/s";
  return out + "\n";
}

void print_job_details(const Job& j) {
  auto opt = [](const std::optional<std::string>& v) { return v ? *v : std::string("-"); };
  std::printf("id:            %lld\n", static_cast<long long>(j.id));
  std::printf("status:        %s\n", std::string(to_string(j.status)).c_str());
  std::printf("source:        %s\n", j.source.c_str());
  for (const auto& m : j.mirrors) std::printf("mirror:        %s\n", m.c_str());
  std::printf("dest:          %s\n", j.dest.c_str());
  std::printf("download_path: %s\n", opt(j.download_path).c_str());
  std::printf("priority:      %d\n", j.priority);
  std::printf("bytes:         %lld of %lld\n", static_cast<long long>(j.bytes), static_cast<long long>(j.total_bytes));
  std::printf("attempts:      %d\n", j.attempts);
  std::printf("created:       %s\n", j.created_at.c_str());
  std::printf("started:       %s\n", opt(j.job_started).c_str());
  std::printf("ended:         %s\n", opt(j.job_ended).c_str());
  std::printf("access token:  %s\n", j.has_access_token ? "yes" : "no");
  for (const auto& h : j.headers) std::printf("header:        %s\n", h.c_str());
  if (j.user_agent) std::printf("user agent:    %s\n", j.user_agent->c_str());
  if (j.sha256) {
    std::printf("sha256:        %s (%s%s)\n", j.sha256->c_str(),
                j.sha256_from ? "stated by the server's " : "given with --sha256",
                j.sha256_from ? j.sha256_from->c_str() : "");
  }
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
