// download: libfetchq from outside, through its public headers only.
//
//   download STATE_FILE FOLDER URL...
//
// Opens a queue whose jobs live in STATE_FILE, downloads each URL into FOLDER, waits for all of
// them and prints one line per job. Exits 0 when every job completed, 1 when one did not, 2 on
// bad arguments or when the queue cannot start.
#include <fetchq/queue.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: download STATE_FILE FOLDER URL...\n";
    return 2;
  }
  // Destinations must be absolute; a trailing '/' says "into this folder, name from the server".
  const std::string folder = std::filesystem::absolute(argv[2]).string() + "/";

  fetchq::QueueOptions options;
  options.db_path = argv[1];
  options.max_parallel = 4;
  auto opened = fetchq::DownloadQueue::open(options);
  if (!opened) {
    std::cerr << "download: cannot open the queue: " << opened.error().message << "\n";
    return 2;
  }
  auto& queue = *opened.value();

  std::vector<fetchq::DownloadRequest> requests;
  for (int i = 3; i < argc; ++i)
    requests.push_back({.source = argv[i], .dest = folder, .options = {}});
  // All or nothing: one bad URL rejects the batch before anything is downloaded.
  auto submitted = queue.download_batch(requests);
  if (!submitted) {
    std::cerr << "download: " << submitted.error().message << "\n";
    return 2;
  }
  std::vector<int64_t> ids;
  for (const auto& job : submitted.value()) ids.push_back(job.id);

  if (!queue.join(std::chrono::minutes(10), ids)) std::cerr << "download: gave up waiting\n";
  int failed = 0;
  for (int64_t id : ids) {
    auto job = queue.id_to_job(id);
    if (!job) {
      ++failed;
      continue;
    }
    std::cout << job->id << ' ' << fetchq::to_string(job->status) << ' '
              << job->download_path.value_or("-") << ' ' << job->bytes;
    if (job->error) std::cout << ' ' << *job->error;
    std::cout << '\n';
    if (job->status != fetchq::JobStatus::kCompleted) ++failed;
  }
  queue.shutdown();
  return failed == 0 ? 0 : 1;
}
