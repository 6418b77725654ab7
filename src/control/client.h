// Client: one connection to fetchqd's control socket, for the fetchq command line.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "fetchq/result.h"

namespace fetchq::control {

// SPEC's order: $FETCHQ_SOCKET, /run/fetchq/fetchqd.sock when it exists, else
// $XDG_RUNTIME_DIR/fetchq/fetchqd.sock.
std::string default_socket_path();

class Client {
 public:
  // Fails (kBusy is never used here) with a message naming the path when nothing answers.
  static Result<Client> connect(const std::string& path);
  Client(Client&& other) noexcept;
  Client& operator=(Client&&) = delete;
  ~Client();

  // Sends one request and reads its answer. A JSON-RPC error comes back as an Error whose code
  // is the JSON-RPC code (negative) or the daemon's own (>= 1).
  Result<nlohmann::json> call(const std::string& method, nlohmann::json params);
  // Sends a request without reading the answer (for subscribe); then read_message() lines.
  Status send(const std::string& method, nlohmann::json params);
  // Next line from the daemon; std::nullopt at end of stream. timeout_ms < 0 waits forever.
  Result<std::optional<nlohmann::json>> read_message(int timeout_ms = -1);
  // The result of an answer read with read_message(), or its error.
  static Result<nlohmann::json> answer_of(nlohmann::json& message);
  int fd() const { return fd_; }

 private:
  explicit Client(int fd) : fd_(fd) {}
  int fd_ = -1;
  int64_t next_id_ = 1;
  std::string buf_;
};

}  // namespace fetchq::control
