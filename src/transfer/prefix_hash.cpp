// PrefixHash and the thread that feeds it (see prefix_hash.h).
#include "transfer/prefix_hash.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "transfer/transfer.h"
#include "util/env.h"
#include "util/fs.h"
#include "util/thread_name.h"

namespace fetchq::transfer {

namespace {
constexpr size_t kReadSize = 1 << 20;
constexpr int64_t kStep = 4 << 20;  // bytes of one hash before the next one's turn
}  // namespace

PrefixHash::PrefixHash(util::Env& env, std::shared_ptr<PartFile> file)
    : env_(env), file_(std::move(file)), ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
}

PrefixHash::~PrefixHash() { EVP_MD_CTX_free(ctx_); }

void PrefixHash::advance_to(int64_t end) {
  int64_t now = target_.load();
  while (now < end && !target_.compare_exchange_weak(now, end)) {
  }
}

int64_t PrefixHash::hashed() const {
  std::lock_guard lk(mu_);
  return done_ ? hashed_before_finish_ : hashed_;
}

bool PrefixHash::read_into_hash(int64_t end, std::string* error) {
  if (buf_.empty()) buf_.resize(kReadSize);
  while (end < 0 || hashed_ < end) {
    size_t want = buf_.size();
    if (end >= 0) want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(want), end - hashed_));
    ssize_t n = env_.pread(file_->fd(), buf_.data(), want, hashed_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = util::errno_message("read", file_->part_path(), errno);
      return false;
    }
    if (n == 0) {
      if (end < 0) return true;  // the end of the file
      *error = file_->part_path() + " is shorter than the bytes written to it";
      return false;
    }
    EVP_DigestUpdate(ctx_, buf_.data(), static_cast<size_t>(n));
    hashed_ += n;
  }
  return true;
}

int64_t PrefixHash::step(int64_t budget) {
  std::lock_guard lk(mu_);
  const int64_t target = target_.load();
  if (done_ || broken_ || hashed_ >= target) return 0;
  const int64_t from = hashed_;
  std::string error;
  if (!read_into_hash(std::min(target, hashed_ + budget), &error)) broken_ = true;
  return hashed_ - from;
}

fetchq::Result<std::string> PrefixHash::finish() {
  std::lock_guard lk(mu_);
  done_ = true;
  hashed_before_finish_ = hashed_;
  struct stat st {};
  if (env_.fstat(file_->fd(), &st) != 0) {
    return make_error(ErrorCode::kIo, util::errno_message("stat", file_->part_path(), errno));
  }
  if (broken_ || st.st_size < hashed_) {
    // What was hashed is no longer (all) there: the whole file, read now.
    EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
    hashed_ = 0;
    hashed_before_finish_ = 0;
  }
  std::string error;
  if (!read_into_hash(-1, &error)) return make_error(ErrorCode::kIo, error);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  buf_ = {};
  return out;
}

PrefixHasher::~PrefixHasher() {
  {
    std::lock_guard lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<PrefixHash> PrefixHasher::start(std::shared_ptr<PartFile> file) {
  auto hash = std::make_shared<PrefixHash>(env_, std::move(file));
  std::lock_guard lk(mu_);
  hashes_.push_back(hash);
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  return hash;
}

void PrefixHasher::advance(const std::shared_ptr<PrefixHash>& hash, int64_t end) {
  hash->advance_to(end);
  {
    std::lock_guard lk(mu_);
    pending_ = true;
  }
  cv_.notify_one();
}

void PrefixHasher::run() {
  util::name_this_thread("fetchq-hash");
  std::unique_lock lk(mu_);
  while (!quit_) {
    std::erase_if(hashes_, [](const std::weak_ptr<PrefixHash>& w) { return w.expired(); });
    const std::vector<std::weak_ptr<PrefixHash>> round = hashes_;
    pending_ = false;
    lk.unlock();
    bool worked = false;
    for (const auto& w : round) {
      // Held for one step only: a hash (and the .part it keeps open) its owner let go of is
      // not kept alive by the others' turns.
      if (auto h = w.lock()) worked = h->step(kStep) > 0 || worked;
    }
    lk.lock();
    if (!worked) cv_.wait(lk, [this] { return quit_ || pending_; });
  }
}

}  // namespace fetchq::transfer
