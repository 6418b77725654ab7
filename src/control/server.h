// ControlServer: the Unix stream socket of fetchqd, serving many clients at once.
//
// One thread owns the socket and every connection (epoll, non-blocking I/O); a small pool runs
// requests, one at a time per connection so answers keep their order; a waiter thread answers
// join and feeds subscribers when the queue reports a change, without polling. A slow, silent
// or hostile client costs only its own buffers, which are bounded, and all answers waiting
// together stay under a budget.
#pragma once

#include <memory>
#include <string>

#include "fetchq/queue.h"
#include "fetchq/result.h"

namespace fetchq::control {

struct ServerOptions {
  std::string socket_path;
  int workers = 4;
  size_t max_connections = 1024;
  size_t max_output_bytes = 32 << 20;  // a subscriber this far behind is dropped
  // All connections' unsent answers together: past it, a connection with output still waiting
  // is served (and read) no further until it drains; joins and events still flow.
  size_t max_total_output_bytes = 64 << 20;
  // All connections' requests read and not yet served (lines still unfinished, and finished
  // ones waiting their turn) together: past it, a connection with a request waiting is read no
  // further until it is served, and the longest unfinished lines over 64 KiB are refused until
  // it is met again.
  size_t max_total_input_bytes = 64 << 20;
};

class ControlServer {
 public:
  // Binds and listens (mode 0660). Refuses a path where another server answers, or that is not a
  // socket (a file is never removed); a stale socket is replaced.
  static Result<std::unique_ptr<ControlServer>> listen(ServerOptions options, DownloadQueue* queue);
  virtual ~ControlServer() = default;
  virtual void start() = 0;
  // Closes the listener and every connection, joins the threads, removes the socket file.
  virtual void stop() = 0;
  // To be wired to QueueOptions::on_change: wakes the waiters.
  virtual void notify_change() = 0;
  virtual size_t connections() = 0;
};

}  // namespace fetchq::control
