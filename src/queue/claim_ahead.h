// How many jobs the queue claims past its free slots. Each claimed job goes to the engine,
// which begins at most max_parallel at once and starts a waiting one the moment a transfer is
// over, on its own thread: the next small file does not wait for the queue's thread to hear of
// the end, commit a batch and claim. A waiting job is `running` on record with no bytes yet,
// and a job added meanwhile with a higher priority comes after it; so jobs are claimed ahead
// only while transfers are short (many small files), where that wait is as short, and given
// back once one of them was claimed kLongest ago and is not over.
#pragma once

#include <chrono>

namespace fetchq::queue {

class ClaimAhead {
 public:
  // Transfers (from their first answer to their end) shorter than this on average are short.
  static constexpr std::chrono::milliseconds kShort{200};
  // A transfer claimed this long ago (its wait in the engine counts) and not over shows the
  // files are not short any more: nothing is claimed ahead, and what waits is given back (a
  // higher priority added meanwhile comes first again), so no job waits behind a big file for
  // much longer than this.
  static constexpr std::chrono::milliseconds kLongest{2000};
  // How many times max_parallel are claimed past the free slots, and at most how many. A batch
  // that waits for the disk (a flush of the database) holds the queue's thread for a few
  // milliseconds, while over a fast link the engine ends four or five small files a
  // millisecond: with only as many again claimed, it ran out of jobs during such a commit and
  // the link stood idle. 32 is about 8 ms of such files.
  static constexpr int kDepth = 6;
  static constexpr int kMostAhead = 32;

  // A transfer took `took`, from its first answer (else its claim) to its end.
  void note(std::chrono::nanoseconds took) {
    const double ms = std::chrono::duration<double, std::milli>(took).count();
    average_ms_ = seen_ == 0 ? ms : average_ms_ + (ms - average_ms_) * kWeight;
    ++seen_;
  }

  // Jobs to claim past max_parallel: kDepth times as many (at most kMostAhead) while the last
  // transfers were short (after a few of them), none otherwise.
  int extra(int max_parallel) const {
    if (seen_ < kFirst || average_ms_ >= static_cast<double>(kShort.count())) return 0;
    return max_parallel > kMostAhead / kDepth ? kMostAhead : kDepth * max_parallel;
  }

 private:
  static constexpr double kWeight = 0.2;  // of the newest transfer in the moving average
  static constexpr int kFirst = 4;        // transfers seen before the average counts
  double average_ms_ = 0;
  long long seen_ = 0;
};

}  // namespace fetchq::queue
