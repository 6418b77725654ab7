// Dispatcher: the control protocol's methods, whatever carries them (the Unix socket today).
//
// A transport parses a request (parse_request in control/protocol.h), hands it to handle()
// with the Session it came from, and writes whatever the dispatcher sends to that session in
// its own framing. The dispatcher knows nothing of sockets, buffers or threads of I/O.
//
// Two kinds of handlers sit in one table (method name -> handler):
// - immediate: the answer is sent to the session before handle() returns (download, get_job,
//   cancel_job, ..., stats, list_jobs as one whole answer);
// - waiting: handle() returns kWaiting and the dispatcher's own waiter thread answers later.
//   join answers once the jobs it names have ended or its timeout passed, then calls
//   Session::resume() so the transport serves that session's next request (answers keep
//   their order). subscribe is answered at once and is then fed event notifications
//   (seq > since) whenever the queue reports a change, for as long as the session lives.
//
// How a second transport (HTTP, WebSocket) reuses it: implement Session for one client (a
// WebSocket connection; for plain HTTP, one request whose Session turns the single answer into
// the response body and never accepts events), call handle() for each request and cancel()
// when the client goes away, and wire QueueOptions::on_change to notify_change() (one
// dispatcher may serve several transports over one queue). join and subscribe then work
// unchanged; nothing of them lives in a transport.
//
// What stays a transport's business: framing and size limits, per-client output budgets and
// backpressure (told to the dispatcher through event_state()), and whether list_jobs is sent
// whole (the immediate handler) or a page at a time as the Unix socket does.
//
// Threads: handle(), cancel() and notify_change() may be called from any thread, at once.
// Session methods are called from the caller of handle() and from the waiter thread.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "control/protocol.h"
#include "fetchq/queue.h"

namespace fetchq::control {

// One client as the dispatcher sees it. Messages are complete JSON-RPC messages as text,
// without framing (no trailing newline).
class Session {
 public:
  virtual ~Session() = default;
  // Queues an answer. Must not block for long: the waiter thread calls it.
  virtual void send(std::string message) = 0;
  // A waiting request is over: its answer was sent, or it was dropped because gone() said
  // so. The session's next request may be served (or the session let go). Called once for
  // each kWaiting, unless cancel() or stop() came first.
  virtual void resume() = 0;
  // True once the client is gone or leaving: its waiting requests are dropped unanswered.
  virtual bool gone() = 0;
  // Whether event notifications may be queued now. kBusy: not now, the transport calls
  // notify_change() once it may take them (for example after an answer written in pages);
  // kBehind: not now, its output is too far behind, ask again soon; kGone: never again.
  enum class EventState { kReady, kBusy, kBehind, kGone };
  virtual EventState event_state() = 0;
  // Queues event notifications unless the session turned busy or gone since event_state()
  // (checked and queued at once); false when nothing was queued.
  virtual bool send_events(const std::vector<std::string>& messages) = 0;
  // Who is asking, for the log lines of changes ("uid 1000").
  virtual std::string peer() const = 0;
};
using SessionPtr = std::shared_ptr<Session>;

class Dispatcher {
 public:
  // `queue` outlives the dispatcher.
  explicit Dispatcher(DownloadQueue* queue);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Starts and stops the waiter thread. stop() drops every waiting request unanswered.
  void start();
  void stop();

  enum class Outcome {
    kAnswered,  // the answer was sent to the session
    kWaiting,   // the waiter answers later, then calls session->resume()
  };
  // Serves one request. Errors are answers: -32601 for an unknown method, -32602 for bad
  // params, the ErrorCode (>= 1) for a refusal by the queue, -32603 when storage throws.
  Outcome handle(const RpcRequest& request, const SessionPtr& session);

  // The client is gone: forget its join and subscription now rather than on the next change.
  // No resume() follows. A pass of the waiter already sending to it may still deliver one
  // last message, so a session must accept (and may drop) calls until it is destroyed.
  void cancel(const Session* session);

  // The queue changed (QueueOptions::on_change), or a busy session may take events again.
  void notify_change();

 private:
  using Clock = std::chrono::steady_clock;
  struct Handler {
    bool waiting = false;
    Outcome (Dispatcher::*run)(const RpcRequest&, const SessionPtr&) = nullptr;
  };
  struct Waiter {
    SessionPtr session;
    json id;
    std::vector<int64_t> ids;  // sorted, without repeats
    std::optional<Clock::time_point> deadline;
    size_t ended = 0;  // ids[0..ended) were seen ended (see join_done)
  };
  struct Subscription {
    SessionPtr session;
    int64_t cursor = 0;  // last event seq sent; the waiter thread's alone once registered
  };

  Outcome immediate(const RpcRequest& request, const SessionPtr& session);
  Outcome join(const RpcRequest& request, const SessionPtr& session);
  Outcome subscribe(const RpcRequest& request, const SessionPtr& session);
  // The answer of an immediate method, as its text.
  std::string answer(const RpcRequest& request, const std::string& peer);
  std::string unknown_ids(const std::vector<int64_t>& ids);
  bool join_done(Waiter& w);
  bool cancelled(const Session* session);
  void waiter_loop();

  DownloadQueue* q_;
  std::map<std::string, Handler, std::less<>> table_;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<Waiter> waiters_;
  std::vector<std::shared_ptr<Subscription>> subscribers_;
  bool changed_ = false;
  bool stopped_ = false;
  // A waiter pass works on copies of the lists: sessions cancelled meanwhile are noted here
  // so the pass neither answers them nor puts them back.
  bool passing_ = false;
  std::vector<const Session*> cancelled_;
  std::thread waiter_;
};

}  // namespace fetchq::control
