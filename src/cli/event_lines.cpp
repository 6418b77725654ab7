// Short event lines for people (see event_lines.h).
#include "cli/event_lines.h"

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "cli/output.h"

namespace fetchq::cli {

using json = nlohmann::json;

namespace {

constexpr const char* kTypes[] = {
    "download_started",   "download_progress",      "download_complete",       "download_error",
    "download_cancelled", "download_paused",        "download_resumed",        "download_restarted",
    "download_retrying",  "download_limit_changed", "download_source_dropped",
};
constexpr std::string_view kPrefix = "download_";
constexpr size_t kNameWidth = 32;
constexpr size_t kErrorWidth = 100;
constexpr size_t kMaxTracked = 100000;  // jobs whose last progress line is remembered

std::string str(const json& p, const char* key) {
  auto it = p.find(key);
  return it != p.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t num(const json& p, const char* key) {
  auto it = p.find(key);
  return it != p.end() && it->is_number() ? it->get<int64_t>() : 0;
}

// The file name of the download path, else of the source URL.
std::string name_of(const json& p) {
  Job j;
  j.source = str(p, "source");
  std::string path = str(p, "download_path");
  if (!path.empty()) j.download_path = path;
  return job_name(j);
}

// One line: control characters from a server's message would break it.
std::string one_line(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return s;
}

}  // namespace

std::optional<std::set<std::string>> parse_event_types(const std::string& list, std::string* unknown) {
  std::set<std::string> out;
  size_t from = 0;
  while (from <= list.size()) {
    size_t comma = list.find(',', from);
    std::string name = list.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
    from = comma == std::string::npos ? list.size() + 1 : comma + 1;
    if (name.empty()) continue;
    std::string full = name.rfind(kPrefix, 0) == 0 ? name : std::string(kPrefix) + name;
    bool known = false;
    for (const char* t : kTypes) known = known || full == t;
    if (!known) {
      if (unknown) *unknown = name;
      return std::nullopt;
    }
    out.insert(full);
  }
  if (out.empty()) {
    if (unknown) *unknown = list;
    return std::nullopt;
  }
  return out;
}

std::optional<int64_t> parse_iso8601_ms(const std::string& ts) {
  int y, mo, d, h, mi, s, ms = 0;
  char z = 0;
  if (std::sscanf(ts.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z) != 8 &&
      std::sscanf(ts.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &z) != 7) {
    return std::nullopt;
  }
  if (z != 'Z') return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(::timegm(&tm)) * 1000 + ms;
}

std::optional<std::string> EventLines::line(const Event& e) {
  json p = json::parse(e.payload, nullptr, false);
  if (!p.is_object()) p = json::object();
  const std::string_view type = std::string_view(e.type).substr(e.type.rfind(kPrefix, 0) == 0 ? kPrefix.size() : 0);
  const auto ms = parse_iso8601_ms(e.ts);
  std::string detail;
  if (type == "progress") {
    const int64_t bytes = num(p, "current_bytes");
    const int64_t total = num(p, "total_bytes");
    auto last = last_progress_.find(e.job_id);
    double rate = -1;
    if (last != last_progress_.end() && ms) {
      const int64_t dt = *ms - last->second.ms;
      if (dt < every_ms_ && (total <= 0 || bytes < total)) return std::nullopt;
      if (dt > 0) rate = static_cast<double>(bytes - last->second.bytes) * 1000.0 / static_cast<double>(dt);
    }
    if (last_progress_.size() >= kMaxTracked && last == last_progress_.end()) last_progress_.clear();
    if (ms) last_progress_[e.job_id] = Shown{*ms, bytes};
    if (total > 0) {
      detail = std::to_string(100 * bytes / total) + "%  " + human_bytes(static_cast<double>(bytes)) + "/" +
               human_bytes(static_cast<double>(total));
    } else {
      detail = human_bytes(static_cast<double>(bytes));
    }
    if (rate >= 0) detail += "  " + human_bytes(rate) + "/s";
  } else {
    if (type != "resumed" && type != "started" && type != "retrying") last_progress_.erase(e.job_id);
    if (type == "complete") {
      detail = human_bytes(static_cast<double>(num(p, "total_bytes")));
    } else if (type == "error") {
      // The message may name URLs; its two ends say the most.
      detail = shorten_middle(str(p, "error_type") + ": " + str(p, "error"), kErrorWidth);
    } else if (type == "resumed") {
      detail = "from " + human_bytes(static_cast<double>(num(p, "from_bytes")));
    } else if (type == "limit_changed") {
      const int64_t limit = num(p, "limit_rate");
      detail = limit > 0 ? "limit " + human_bytes(static_cast<double>(limit)) + "/s" : "no limit";
    } else if (type == "restarted") {
      detail = str(p, "reason");
    } else if (type == "source_dropped") {
      detail = shorten_middle(str(p, "url") + ": " + str(p, "reason"), kErrorWidth);
    } else if (type == "retrying") {
      detail = "attempt " + std::to_string(num(p, "attempt")) + " in " +
               human_duration(static_cast<double>(num(p, "delay_s"))) + ": " + str(p, "reason");
    }
  }
  // HH:MM:SS of the stamp (UTC), or the stamp itself when it is not one fetchq wrote.
  std::string when = ms && e.ts.size() >= 19 ? e.ts.substr(11, 8) : e.ts;
  // The sequence number first: it is what --since takes.
  char head[96];
  std::snprintf(head, sizeof head, "%lld  %s  #%lld  %-10s", static_cast<long long>(e.seq), when.c_str(),
                static_cast<long long>(e.job_id), std::string(type).c_str());
  std::string out = head;
  out += "  " + one_line(shorten_middle(name_of(p), kNameWidth));
  if (!detail.empty()) out += "  " + one_line(detail);
  return out;
}

}  // namespace fetchq::cli
