// How the command line shows jobs: sizes, rates, tables, progress bars and JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fetchq/job.h"

namespace fetchq::cli {

std::string human_bytes(double bytes);  // "1.5 MiB"
std::string human_duration(double seconds);  // "1m05s"
// One progress line: name, percent, size, rate, time left; fits `width` columns. A negative
// rate (a job not running) leaves rate and time left blank.
std::string progress_line(const Job& job, double rate, int width);
std::string job_name(const Job& job);  // the file name, else the URL's
void print_jobs_json(const std::vector<Job>& jobs);  // an array on stdout
void print_job_json(const Job& job);                 // one object on stdout
void print_jobs_table(const std::vector<Job>& jobs, const std::vector<double>& rates);
void print_job_details(const Job& job);
bool stdout_is_terminal();
bool stderr_is_terminal();
int terminal_width();

}  // namespace fetchq::cli
