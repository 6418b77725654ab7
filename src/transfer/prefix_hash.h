// The sha256 of a file taken while it downloads: the bytes from its start are hashed, in order,
// as far as they are written, on a thread of their own; the check at the end reads only the
// rest. A multi-GB file with a sha256 to check then costs its tail at the end, not a second
// read of the whole file.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fetchq/result.h"

struct evp_md_ctx_st;

namespace fetchq::util {
class Env;
}

namespace fetchq::transfer {

class PartFile;

class PrefixHash {
 public:
  PrefixHash(util::Env& env, std::shared_ptr<PartFile> file);
  ~PrefixHash();
  PrefixHash(const PrefixHash&) = delete;
  PrefixHash& operator=(const PrefixHash&) = delete;

  // Bytes [0, end) of the file are written and stay as they are: they may be hashed.
  void advance_to(int64_t end);
  // Hashes up to `budget` bytes of those given and not hashed yet; returns how many it hashed.
  int64_t step(int64_t budget);
  // The sha256 (lower-case hex) of the whole file as it is now: what was hashed so far and the
  // rest up to its end, read now. Starts over from byte 0 when the file is now shorter than
  // what was hashed or a read failed. The hash takes no more steps afterwards.
  fetchq::Result<std::string> finish();
  // Bytes hashed so far; after finish(), those hashed before it.
  int64_t hashed() const;

 private:
  bool read_into_hash(int64_t end, std::string* error);  // holds mu_

  util::Env& env_;
  std::shared_ptr<PartFile> file_;
  mutable std::mutex mu_;
  evp_md_ctx_st* ctx_ = nullptr;
  int64_t hashed_ = 0;
  std::atomic<int64_t> target_{0};  // advance_to never waits for a step
  int64_t hashed_before_finish_ = 0;
  bool broken_ = false;  // a read failed: finish() reads the file again from its start
  bool done_ = false;
  std::vector<unsigned char> buf_;
};

// One thread that takes steps of every hash given to it in turn, while they have bytes to take.
// Started at the first hash.
class PrefixHasher {
 public:
  explicit PrefixHasher(util::Env& env) : env_(env) {}
  ~PrefixHasher();
  PrefixHasher(const PrefixHasher&) = delete;
  PrefixHasher& operator=(const PrefixHasher&) = delete;

  std::shared_ptr<PrefixHash> start(std::shared_ptr<PartFile> file);
  // The hash may take bytes [0, end) now.
  void advance(const std::shared_ptr<PrefixHash>& hash, int64_t end);

 private:
  void run();

  util::Env& env_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::weak_ptr<PrefixHash>> hashes_;  // guarded by mu_
  bool pending_ = false;                           // guarded by mu_: advance() since the last look
  bool quit_ = false;                              // guarded by mu_
  std::thread thread_;
};

}  // namespace fetchq::transfer
