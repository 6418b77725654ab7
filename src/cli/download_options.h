// The download options `fetchq add` and `fetchq get` share: registered once, read into one
// DownloadRequest template (everything but the source).
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "fetchq/job.h"
#include "fetchq/result.h"

namespace fetchq::cli {

struct DownloadArgs {
  std::string dir, output, sha256, token_env, if_exists, limit_rate;
  std::optional<int> priority;
  std::optional<int> connections;
  std::vector<std::string> headers;  // --header, as written ("Name: value")
  std::optional<std::string> user_agent;
  std::vector<std::string> mirrors;  // --mirror, as written
};

// -d/--dir, -o/--output, -p/--priority, --sha256, --token-env, --if-exists, --connections,
// --header (repeatable), --user-agent, --limit-rate, --mirror (repeatable).
void add_download_options(CLI::App* cmd, DownloadArgs& args);

// "-d and -o cannot be used together", or Ok.
Status check_dir_and_output(const DownloadArgs& args);
// --mirror names other sources of one file: with several URLs (or -i FILE, which may hold
// several) it could belong to any of them, and is refused. `urls`: the URLs given as arguments.
Status check_mirror_use(const DownloadArgs& args, size_t urls, bool input_file);

// The request every URL of the command gets, source left empty: dest (absolute; a folder ends
// in '/'), priority (default 10), sha256, and the token read from --token-env (an error, a
// usage error for the caller, when that variable is unset or empty), the headers and the user
// agent (a malformed or refused header is an error too, naming the header but never its value),
// and the mirrors as written (the queue checks them).
// if_exists is left to the caller: `add` lets fetchqd check it, `get` checks it before anything
// else. --limit-rate goes to options.limit_rate (an error, a usage error, when it is not a
// rate); `get` makes it the limit of its whole run instead.
Result<DownloadRequest> request_template(const DownloadArgs& args);

// The lines of an -i FILE ('-': standard input) that hold something, trimmed, each with its
// number: blank lines and '#' comments are skipped, a UTF-8 byte-order mark and CRLF endings
// taken off. An error ("cannot read FILE") when it cannot be opened.
struct InputLine {
  int number = 0;
  std::string text;
};
Result<std::vector<InputLine>> read_input_lines(const std::string& path);

}  // namespace fetchq::cli
