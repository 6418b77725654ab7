// The command line's side of the control socket.
#include "control/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "util/fs.h"

namespace fetchq::control {

std::string default_socket_path() {
  if (const char* s = std::getenv("FETCHQ_SOCKET"); s && *s) return s;
  if (util::exists("/run/fetchq/fetchqd.sock")) return "/run/fetchq/fetchqd.sock";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/fetchq/fetchqd.sock";
  return "/run/fetchq/fetchqd.sock";
}

Result<Client> Client::connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return make_error(ErrorCode::kInvalidArgument, "socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(ErrorCode::kIo, util::errno_message("socket", path, errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(ErrorCode::kIo, "cannot reach fetchqd at " + path + ": " + std::strerror(err) +
                                          " (is it running? --socket or $FETCHQ_SOCKET name another)");
  }
  return Client(fd);
}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), next_id_(other.next_id_), buf_(std::move(other.buf_)) {}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

Status Client::send(const std::string& method, nlohmann::json params) {
  nlohmann::json req{{"jsonrpc", "2.0"}, {"id", next_id_++}, {"method", method}, {"params", std::move(params)}};
  std::string line = req.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(ErrorCode::kIo, std::string("lost the connection to fetchqd: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return Ok{};
}

Result<std::optional<nlohmann::json>> Client::read_message(int timeout_ms) {
  size_t scanned = 0;  // a long answer arrives in many pieces: look at each byte once
  for (;;) {
    auto nl = buf_.find('\n', scanned);
    scanned = buf_.size();
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      auto doc = nlohmann::json::parse(line, nullptr, false);
      if (doc.is_discarded()) return make_error(ErrorCode::kIo, "fetchqd sent a line that is not JSON");
      return std::optional<nlohmann::json>(std::move(doc));
    }
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r == 0) return std::optional<nlohmann::json>();
    if (r < 0) {
      if (errno == EINTR) return make_error(ErrorCode::kIo, "interrupted");
      return make_error(ErrorCode::kIo, std::strerror(errno));
    }
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n == 0) return make_error(ErrorCode::kIo, "fetchqd closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(ErrorCode::kIo, std::string("lost the connection to fetchqd: ") + std::strerror(errno));
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

Result<nlohmann::json> Client::call(const std::string& method, nlohmann::json params) {
  if (auto st = send(method, std::move(params)); !st) return st.error();
  for (;;) {
    auto msg = read_message();
    if (!msg) return msg.error();
    if (!msg.value()) return make_error(ErrorCode::kIo, "no answer from fetchqd");
    auto& m = *msg.value();
    if (m.contains("method")) continue;  // an event notification of a subscription
    return answer_of(m);
  }
}

Result<nlohmann::json> Client::answer_of(nlohmann::json& message) {
  if (message.contains("error")) {
    auto& e = message["error"];
    int code = e.value("code", 0);
    // Domain errors keep their ErrorCode; protocol errors become kInvalidArgument.
    ErrorCode ec = code >= 1 && code <= 9 ? static_cast<ErrorCode>(code) : ErrorCode::kInvalidArgument;
    return make_error(ec, e.value("message", std::string("unknown error")));
  }
  auto it = message.find("result");
  if (it == message.end()) return nlohmann::json();
  return std::move(*it);
}

}  // namespace fetchq::control
