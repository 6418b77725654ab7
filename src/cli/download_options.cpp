// The download options shared by `fetchq add` and `fetchq get`.
#include "cli/download_options.h"

#include <cstdlib>
#include <fstream>

#include "queue/request_check.h"
#include "util/fs.h"
#include "util/rate.h"

namespace fetchq::cli {

void add_download_options(CLI::App* cmd, DownloadArgs& a) {
  cmd->add_option("-d,--dir", a.dir, "folder to download into (default: the current folder)");
  cmd->add_option("-o,--output", a.output, "file to write (one URL only)");
  cmd->add_option("-p,--priority", a.priority, "priority; lower runs first (default 10)");
  cmd->add_option("--sha256", a.sha256, "expected sha256 of the file, checked before it is kept");
  cmd->add_option("--token-env", a.token_env, "environment variable holding a Bearer token");
  cmd->add_option("--if-exists", a.if_exists, "error (default), skip, overwrite or rename");
  cmd->add_option("--connections", a.connections,
                  "connections for one big file, 1 to 16 (default: the daemon's, adaptive; 1: one connection)")
      ->check(CLI::Range(1, 16));
  cmd->add_option("-H,--header", a.headers,
                  "request header 'Name: value', repeatable; Authorization and Cookie values are kept secret")
      ->allow_extra_args(false);
  cmd->add_option("--user-agent", a.user_agent, "User-Agent to send (default: fetchq/VERSION)");
  cmd->add_option("--mirror", a.mirrors,
                  "another URL of the same file, repeatable (one URL only); segments are spread "
                  "over the mirrors that match the source")
      ->type_name("URL")
      ->allow_extra_args(false);
  cmd->add_option("--limit-rate", a.limit_rate,
                  "bytes per second at most, over all connections: 500k, 5M, 1.5M (0: no limit)")
      ->type_name("RATE");
}

Status check_dir_and_output(const DownloadArgs& a) {
  if (!a.dir.empty() && !a.output.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "-d and -o cannot be used together");
  }
  return Ok{};
}

Status check_mirror_use(const DownloadArgs& a, size_t urls, bool input_file) {
  if (!a.mirrors.empty() && (urls > 1 || input_file)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "--mirror is for a single URL: give one URL with its mirrors");
  }
  return Ok{};
}

Result<DownloadRequest> request_template(const DownloadArgs& a) {
  DownloadRequest r;
  r.options.priority = a.priority.value_or(10);
  if (!a.sha256.empty()) r.options.sha256 = a.sha256;
  r.options.connections = a.connections;
  if (!a.limit_rate.empty()) {
    std::string why;
    auto rate = util::parse_rate(a.limit_rate, &why);
    if (!rate) return make_error(ErrorCode::kInvalidArgument, "--limit-rate: " + why);
    r.options.limit_rate = *rate;
  }
  if (!a.token_env.empty()) {
    const char* tok = std::getenv(a.token_env.c_str());
    if (!tok || !*tok) {
      return make_error(ErrorCode::kInvalidArgument,
                        "--token-env " + a.token_env + ": that variable is not set or empty");
    }
    r.options.access_token = tok;
  }
  for (const auto& line : a.headers) {
    auto h = queue::parse_header(line);
    if (!h) return make_error(ErrorCode::kInvalidArgument, "--header: " + h.error().message);
    r.options.headers.push_back(std::move(h.value()));
  }
  if (r.options.headers.size() > queue::kMaxHeaders) {
    return make_error(ErrorCode::kInvalidArgument,
                      "--header: at most " + std::to_string(queue::kMaxHeaders) + " headers per job");
  }
  if (a.user_agent) {
    if (auto st = queue::check_user_agent(*a.user_agent); !st) {
      return make_error(ErrorCode::kInvalidArgument, "--user-agent: " + st.error().message);
    }
    r.options.user_agent = a.user_agent;
  }
  r.options.mirrors = a.mirrors;
  if (!a.output.empty()) {
    r.dest = util::absolute_path(a.output);
  } else {
    r.dest = util::absolute_path(a.dir.empty() ? "." : a.dir);
    if (r.dest.back() != '/') r.dest += "/";
  }
  return r;
}

Result<std::vector<InputLine>> read_input_lines(const std::string& path) {
  std::ifstream in(path == "-" ? "/dev/stdin" : path);
  if (!in) return Error{ErrorCode::kInvalidArgument, "cannot read " + path};
  std::vector<InputLine> out;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a byte-order mark
    const auto start = line.find_first_not_of(" \t\r");
    if (start == std::string::npos || line[start] == '#') continue;
    out.push_back({number, line.substr(start, line.find_last_not_of(" \t\r") - start + 1)});
  }
  return out;
}

}  // namespace fetchq::cli
