// The progress renderer shared by `fetchq get` and `fetchq wait --progress` (progress_view.h).
#include "cli/progress_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cli/output.h"

namespace fetchq::cli {

namespace {

double rate_of(const std::vector<JobRate>& rates, int64_t id) {
  for (const auto& r : rates) {
    if (r.id == id) return r.bytes_per_second;
  }
  return -1;
}

std::string pad_left(const std::string& s, size_t w) {
  size_t n = utf8_width(s);
  return n >= w ? s : std::string(w - n, ' ') + s;
}

std::string fit(const std::string& s, size_t w) {
  std::string cut = shorten_middle(s, w);
  return cut + std::string(w - std::min(w, utf8_width(cut)), ' ');
}

}  // namespace

Totals totals_of(const std::vector<Job>& jobs, const std::vector<JobRate>& rates) {
  Totals t;
  t.jobs = jobs.size();
  for (const auto& j : jobs) {
    switch (j.status) {
      case JobStatus::kCompleted:
        ++t.completed;
        break;
      case JobStatus::kError:
      case JobStatus::kCancelled:
        ++t.failed;
        break;
      case JobStatus::kRunning:
        ++t.running;
        if (double r = rate_of(rates, j.id); r > 0) t.rate += r;
        break;
      default:
        ++t.waiting;
    }
    t.bytes += j.bytes;
    if (j.total_bytes > 0) {
      t.total_bytes += j.total_bytes;
    } else {
      t.total_bytes += j.bytes;
      if (j.status != JobStatus::kCompleted) t.all_sizes_known = false;
    }
  }
  return t;
}

std::string job_progress_line(const Job& job, double rate, int width) {
  const size_t w = static_cast<size_t>(std::max(width, 10));
  const bool running = job.status == JobStatus::kRunning;
  const double pct = job.total_bytes > 0
                         ? 100.0 * static_cast<double>(job.bytes) / static_cast<double>(job.total_bytes)
                         : (job.status == JobStatus::kCompleted ? 100.0 : -1);
  // The parts right of the name, most needed first; each goes only with the ones before it.
  std::vector<std::string> parts;
  parts.push_back(pad_left(pct >= 0 ? std::to_string(static_cast<int>(pct)) + "%" : "", 4));
  if (running) {
    parts.push_back(pad_left(rate >= 0 ? human_bytes(rate) + "/s" : "", 12));
    parts.push_back(pad_left(rate > 0 && job.total_bytes > job.bytes
                                 ? human_duration(static_cast<double>(job.total_bytes - job.bytes) / rate)
                                 : "",
                             6));
  } else {
    parts.push_back(pad_left(std::string(to_string(job.status)), 12));
  }
  parts.push_back(pad_left(job.total_bytes > 0 ? human_bytes(static_cast<double>(job.bytes)) + "/" +
                                                     human_bytes(static_cast<double>(job.total_bytes))
                                               : human_bytes(static_cast<double>(job.bytes)),
                           21));
  constexpr size_t kMinName = 12;
  std::string right;
  for (const auto& p : parts) {
    if (kMinName + right.size() + 1 + utf8_width(p) > w) break;
    right += " " + p;
  }
  size_t rest = w - std::min(w, utf8_width(right));
  // A bar when there is room to spare: a quarter of what is left, at most 30.
  std::string bar;
  if (rest >= kMinName + 14 && pct >= 0) {
    size_t bar_w = std::min<size_t>(30, (rest - kMinName) / 3);
    size_t filled = static_cast<size_t>(static_cast<double>(bar_w) * std::min(pct, 100.0) / 100.0);
    bar = " [" + std::string(filled, '#') + std::string(bar_w - filled, '.') + "]";
    rest -= bar_w + 3;
  }
  return fit(job_name(job), std::min<size_t>(rest, 60)) + bar + right;
}

std::vector<std::string> progress_lines(const std::vector<Job>& jobs, const std::vector<JobRate>& rates, int width,
                                        size_t max_jobs) {
  std::vector<std::string> out;
  for (const auto& j : jobs) {
    if (out.size() >= max_jobs) break;
    if (j.status == JobStatus::kRunning || jobs.size() <= max_jobs) {
      out.push_back(job_progress_line(j, j.status == JobStatus::kRunning ? rate_of(rates, j.id) : -1, width));
    }
  }
  const Totals t = totals_of(jobs, rates);
  // The parts in the order shown, each with its rank: on a narrow terminal the least needed
  // (highest rank) go first, so what is left is whole ("0/3 files, 3.8/17 MiB, 19s left").
  std::vector<std::pair<std::string, int>> parts;
  parts.emplace_back(std::to_string(t.completed) + "/" + std::to_string(t.jobs) + " files", 0);
  parts.emplace_back(human_bytes(static_cast<double>(t.bytes)) + "/" +
                         human_bytes(static_cast<double>(t.total_bytes)) + (t.all_sizes_known ? "" : "+"),
                     1);
  if (t.running > 0) parts.emplace_back(human_bytes(t.rate) + "/s", 4);
  if (t.rate > 0 && t.all_sizes_known && t.total_bytes > t.bytes) {
    parts.emplace_back(human_duration(static_cast<double>(t.total_bytes - t.bytes) / t.rate) + " left", 2);
  }
  if (t.running > 0) parts.emplace_back(std::to_string(t.running) + " running", 5);
  if (t.waiting > 0) parts.emplace_back(std::to_string(t.waiting) + " waiting", 6);
  if (t.failed > 0) parts.emplace_back(std::to_string(t.failed) + " failed", 3);
  const size_t w = static_cast<size_t>(std::max(width, 10));
  std::string all;
  for (;;) {
    all.clear();
    for (const auto& [text, rank] : parts) all += (all.empty() ? "" : ", ") + text;
    if (utf8_width(all) <= w || parts.size() <= 2) break;
    parts.erase(std::max_element(parts.begin(), parts.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; }));
  }
  out.push_back(shorten_middle(all, w));
  return out;
}

std::vector<std::string> summary_lines(const std::vector<Job>& jobs, double elapsed) {
  const Totals t = totals_of(jobs, {});
  int64_t got = 0;
  for (const auto& j : jobs) {
    if (j.status == JobStatus::kCompleted) got += j.bytes;
  }
  std::string line = std::to_string(t.completed) + (t.completed == 1 ? " file, " : " files, ") +
                     human_bytes(static_cast<double>(got)) + " in " + human_duration(elapsed);
  if (elapsed > 0 && got > 0) line += " (" + human_bytes(static_cast<double>(got) / elapsed) + "/s)";
  if (t.failed > 0) line += "; " + std::to_string(t.failed) + " failed";
  if (t.waiting + t.running > 0) line += "; " + std::to_string(t.waiting + t.running) + " not finished";
  std::vector<std::string> out{line};
  for (const auto& j : jobs) {
    if (j.status == JobStatus::kError || j.status == JobStatus::kCancelled) {
      out.push_back("  " + job_name(j) + ": " +
                    (j.status == JobStatus::kCancelled ? std::string("cancelled")
                                                       : j.error_type.value_or("error") + (j.error ? ": " + *j.error : "")));
    }
  }
  return out;
}

std::string LiveArea::frame(const std::vector<std::string>& lines, int width) {
  const size_t w = static_cast<size_t>(std::max(width, 1));
  size_t rows = 0;
  for (size_t len : last_) rows += std::max<size_t>(1, (len + w - 1) / w);
  std::string out;
  if (rows > 0) out += "\x1b[" + std::to_string(rows) + "F";
  out += "\x1b[J";
  last_.clear();
  for (const auto& l : lines) {
    std::string cut = shorten_middle(l, w);
    last_.push_back(utf8_width(cut));
    out += cut + "\n";
  }
  return out;
}

}  // namespace fetchq::cli
