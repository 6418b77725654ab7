// _fetchq: the Python binding of fetchq's queue (in-process or fetchqd's), under `fetchq`.
//
// A thin layer: jobs cross as dicts, failures as _fetchq.Error(code, message), and the package
// (python/fetchq/) builds the InvokeAI-style API on top. Every call that may block (SQLite, a
// join, a shutdown, waiting for an event) releases the GIL first, and the queue's callbacks only
// push into an EventChannel, so no fetchq thread ever waits for the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backend.h"
#include "fetchq/version.h"

namespace py = pybind11;

namespace fetchq::python {
namespace {

const char* code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kSchemeNotAllowed:
      return "scheme_not_allowed";
    case ErrorCode::kOutsideRoots:
      return "outside_roots";
    case ErrorCode::kWrongState:
      return "wrong_state";
    case ErrorCode::kStorage:
      return "storage";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

// Carries an Error out of a binding; translated into _fetchq.Error(code, message).
struct QueueFailure {
  Error error;
};

py::object opt(const std::optional<std::string>& v) {
  return v ? py::object(py::str(*v)) : py::object(py::none());
}

// The fields the package reads; the token is never among them (Job does not hold it).
py::dict to_dict(const Job& j) {
  py::dict d;
  d["id"] = j.id;
  d["source"] = j.source;
  d["dest"] = j.dest;
  d["priority"] = j.priority;
  d["status"] = std::string(to_string(j.status));
  d["download_path"] = opt(j.download_path);
  d["job_started"] = opt(j.job_started);
  d["job_ended"] = opt(j.job_ended);
  d["bytes"] = j.bytes;
  d["total_bytes"] = j.total_bytes;
  d["error_type"] = opt(j.error_type);
  d["error"] = opt(j.error);
  d["cancelled"] = j.cancelled;
  d["attempts"] = j.attempts;
  d["has_access_token"] = j.has_access_token;
  d["created_at"] = j.created_at;
  return d;
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

class Queue {
  // Helpers first: the methods below need call()'s deduced return type.
  // Runs fn on the backend with the GIL released. The shared_ptr copy keeps the backend alive
  // should another thread close() meanwhile (the call then answers from a stopped queue).
  template <typename Fn>
  auto call(Fn&& fn) {
    std::shared_ptr<Backend> b = backend_;
    if (!b) throw QueueFailure{make_error(ErrorCode::kWrongState, "the queue is stopped")};
    auto r = [&] {
      py::gil_scoped_release nogil;
      return fn(*b);
    }();
    if (!r) throw QueueFailure{r.error()};
    return std::move(r.value());
  }

 public:
  // The queue in this process, on the SQLite file db_path.
  static std::unique_ptr<Queue> open(const std::string& db_path, int max_parallel,
                                     double progress_interval) {
    auto q = std::unique_ptr<Queue>(new Queue);
    QueueOptions options;
    options.db_path = db_path;
    options.max_parallel = max_parallel;
    options.progress_interval = to_ms(progress_interval);
    auto opened = [&] {
      py::gil_scoped_release nogil;
      return open_local(std::move(options), q->channel_);
    }();
    if (!opened) throw QueueFailure{opened.error()};
    q->backend_ = std::move(opened.value());
    return q;
  }

  // A client of the fetchqd behind socket_path.
  static std::unique_ptr<Queue> connect(const std::string& socket_path) {
    auto q = std::unique_ptr<Queue>(new Queue);
    auto connected = [&] {
      py::gil_scoped_release nogil;
      return connect_remote(socket_path, q->channel_);
    }();
    if (!connected) throw QueueFailure{connected.error()};
    q->backend_ = std::move(connected.value());
    return q;
  }

  ~Queue() {
    // Reached with the GIL held (Python's garbage collector). shutdown() waits for the backend's
    // threads, which only push into the channel and never take the GIL: no deadlock.
    if (backend_) backend_->shutdown();
    channel_->close();
  }

  py::dict download(const std::string& source, const std::string& dest, int priority,
                    std::optional<std::string> access_token) {
    DownloadRequest request;
    request.source = source;
    request.dest = dest;
    request.options.priority = priority;
    request.options.access_token = std::move(access_token);
    return to_dict(call([&](Backend& b) { return b.download(request); }));
  }

  py::list list_jobs() {
    auto jobs = call([](Backend& b) { return b.list_jobs(); });
    py::list out;
    for (const auto& j : jobs) out.append(to_dict(j));
    return out;
  }

  py::object id_to_job(int64_t id) {
    auto job = call([id](Backend& b) { return b.id_to_job(id); });
    return job ? py::object(to_dict(*job)) : py::object(py::none());
  }

  py::dict cancel_job(int64_t id) {
    return to_dict(call([id](Backend& b) { return b.cancel_job(id); }));
  }
  py::dict pause_job(int64_t id) {
    return to_dict(call([id](Backend& b) { return b.pause_job(id); }));
  }
  py::dict resume_job(int64_t id) {
    return to_dict(call([id](Backend& b) { return b.resume_job(id); }));
  }
  py::dict retry_job(int64_t id) {
    return to_dict(call([id](Backend& b) { return b.retry_job(id); }));
  }
  int64_t cancel_all_jobs() {
    return call([](Backend& b) { return b.cancel_all_jobs(); });
  }
  int64_t prune_jobs() {
    return call([](Backend& b) { return b.prune_jobs(); });
  }

  bool join(std::optional<double> timeout, const std::vector<int64_t>& ids) {
    std::optional<std::chrono::milliseconds> wait;
    if (timeout) wait = to_ms(*timeout);
    return call([&](Backend& b) { return b.join(wait, ids); });
  }

  // (kind, job) or None after `timeout` seconds, or at once when closed and drained.
  py::object next_event(double timeout) {
    std::optional<JobEvent> event;
    // The GIL is taken back by a plain call, not by gil_scoped_release's destructor: should the
    // interpreter be finalizing, Python ends this (daemon) thread there by unwinding its stack,
    // and unwinding out of a destructor, which is noexcept, would abort the process.
    PyThreadState* state = PyEval_SaveThread();
    try {
      event = channel_->next(to_ms(timeout));
    } catch (...) {
      PyEval_RestoreThread(state);
      throw;
    }
    PyEval_RestoreThread(state);
    if (!event) return py::none();
    return py::make_tuple(event->kind, to_dict(event->job));
  }

  bool events_done() { return channel_->closed_and_empty(); }

  // Stops delivering events (a local queue also stops every transfer, checkpointed, until the
  // next open). Events already queued can still be taken with next_event(). Idempotent.
  void close() {
    std::shared_ptr<Backend> b = std::move(backend_);
    if (b) {
      py::gil_scoped_release nogil;
      b->shutdown();
    }
    channel_->close();
  }

  bool closed() const { return !backend_; }

 private:
  Queue() = default;

  std::shared_ptr<EventChannel> channel_ = std::make_shared<EventChannel>();
  std::shared_ptr<Backend> backend_;  // guarded by the GIL; null once closed
};

}  // namespace
}  // namespace fetchq::python

PYBIND11_MODULE(_fetchq, m) {
  using fetchq::python::Queue;
  m.doc() = "fetchq's persistent download queue (the C++ core under the fetchq package)";
  m.attr("__version__") = fetchq::kVersion;

  // fetchq logs to stdout by default; a Python program's stdout is its own. Warnings and errors
  // go to stderr; set_log_level changes how much.
  auto logger = spdlog::stderr_color_mt("fetchq");
  logger->set_level(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  m.def(
      "set_log_level",
      [](const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); },
      py::arg("level"),
      "Sets how much fetchq logs to stderr: trace, debug, info, warn, err, critical, off.");

  static py::exception<fetchq::python::QueueFailure> error(m, "Error");
  error.doc() =
      "A failure of the queue: args are (code, message), code as 'not_found', 'busy', ...";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fetchq::python::QueueFailure& f) {
      py::tuple args = py::make_tuple(fetchq::python::code_name(f.error.code), f.error.message);
      PyErr_SetObject(error.ptr(), args.ptr());
    }
  });

  py::class_<Queue>(m, "Queue", "A fetchq queue: in this process (open) or fetchqd's (connect).")
      .def_static("open", &Queue::open, py::arg("db_path"), py::arg("max_parallel") = 5,
                  py::arg("progress_interval") = 1.0,
                  "The queue in this process, on an SQLite file.")
      .def_static("connect", &Queue::connect, py::arg("socket_path"),
                  "A client of the fetchqd behind a socket.")
      .def("download", &Queue::download, py::arg("source"), py::arg("dest"),
           py::arg("priority") = 10, py::arg("access_token") = py::none())
      .def("list_jobs", &Queue::list_jobs)
      .def("id_to_job", &Queue::id_to_job, py::arg("id"))
      .def("cancel_job", &Queue::cancel_job, py::arg("id"))
      .def("pause_job", &Queue::pause_job, py::arg("id"))
      .def("resume_job", &Queue::resume_job, py::arg("id"))
      .def("retry_job", &Queue::retry_job, py::arg("id"))
      .def("cancel_all_jobs", &Queue::cancel_all_jobs)
      .def("prune_jobs", &Queue::prune_jobs)
      .def("join", &Queue::join, py::arg("timeout") = py::none(),
           py::arg("ids") = std::vector<int64_t>{})
      .def("next_event", &Queue::next_event, py::arg("timeout"))
      .def("events_done", &Queue::events_done)
      .def("close", &Queue::close)
      .def_property_readonly("closed", &Queue::closed);
}
