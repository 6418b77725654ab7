// How the command line shows jobs: sizes, rates, tables, progress bars and JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fetchq/job.h"

namespace fetchq::cli {

// An error type as a table cell: "HTTPError(404 Not Found)" is "HTTP 404"; others as they are.
std::string short_error_type(const std::string& type);

std::string human_bytes(double bytes);  // "1.5 MiB"
std::string human_duration(double seconds);  // "1m05s"
// One progress line: name, percent, size, rate, time left; fits `width` columns. A negative
// rate (a job not running) leaves rate and time left blank.
std::string progress_line(const Job& job, double rate, int width);
std::string job_name(const Job& job);  // the file name, else the URL's
// Shortens `name` to at most `width` characters by cutting its middle (`shard-…0003.bin`),
// so the ends that tell similar names apart stay visible. Counts UTF-8 code points.
std::string shorten_middle(const std::string& name, size_t width);
// The same, but the part up to byte `keep` (where the name differs from similar ones) stays
// visible as far as the width allows: `model-00001-o…sors`.
std::string shorten_keeping(const std::string& name, size_t width, size_t keep);
size_t utf8_width(const std::string& s);  // code points
void print_jobs_json(const std::vector<Job>& jobs);  // an array on stdout
void print_job_json(const Job& job);                 // one object on stdout
// The `fetchq list` table: one row a job (rate and time left for the ones in `rates`, the
// error type for failed ones), then a Sum row (jobs, bytes done/total, total rate). With a
// width > 0 the names are shortened in the middle so that no row is wider.
std::string jobs_table(const std::vector<Job>& jobs, const std::vector<JobRate>& rates, int width);
void print_job_details(const Job& job);
bool stdout_is_terminal();
bool stderr_is_terminal();
int terminal_width();

}  // namespace fetchq::cli
