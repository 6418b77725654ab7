"""DownloadQueueService: InvokeAI's download queue API on fetchq's persistent queue."""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Union

from . import _fetchq
from ._job import (
    DownloadError,
    DownloadJob,
    DownloadJobStatus,
    FetchqError,
    InvalidDownloadRequest,
    ServiceInactiveException,
    UnknownJobIDException,
)

logger = logging.getLogger("fetchq")

DownloadEventHandler = Callable[[DownloadJob], Any]

_CALLBACK_NAMES = ("on_start", "on_progress", "on_complete", "on_error", "on_cancelled")
# The queue's event kinds, with the callback and the event bus method each one calls.
_KIND_CALLBACK = {
    "started": "on_start",
    "progress": "on_progress",
    "complete": "on_complete",
    "error": "on_error",
    "cancelled": "on_cancelled",
}
_TERMINAL_KINDS = frozenset({"complete", "error", "cancelled"})
# After the queue says the jobs ended, join() waits for their last callbacks as long as the
# callback thread keeps delivering; this long without a delivery, it gives up with a warning.
_CALLBACK_GRACE = 10.0


def _accepts_two(fn: Callable[..., Any]) -> bool:
    """Whether fn takes (job, exception), as the seed's newer on_error handlers do."""
    try:
        inspect.signature(fn).bind(None, None)
        return True
    except (TypeError, ValueError):
        return False


def _bus_call(bus: Any, name: str, job: DownloadJob, payload: Dict[str, Any]) -> None:
    """Calls bus.<name> with the seed's payload keys as keyword arguments, or with the job when
    the method takes a parameter named ``job``. A bus without the method is skipped."""
    method = getattr(bus, name, None)
    if method is None:
        return
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        method(**payload)
        return
    if "job" in params:
        method(job=job)
    elif any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        method(**payload)
    else:
        method(**{k: v for k, v in payload.items() if k in params})


def _raise_for(err: "_fetchq.Error", job_id: Optional[int] = None) -> None:
    code, message = err.args[0], err.args[1]
    if code == "not_found":
        raise UnknownJobIDException(f"Unrecognized job: {job_id}" if job_id is not None else message) from None
    if code in ("invalid_argument", "scheme_not_allowed", "outside_roots"):
        raise InvalidDownloadRequest(code, message) from None
    raise FetchqError(code, message) from None


class DownloadQueueService:
    """A persistent download queue with the API of InvokeAI's DownloadQueueService.

    Jobs live in the SQLite file ``state`` (a private temporary file when None, removed with the
    service) and survive crashes and restarts: a service opened again on the same file resumes
    its unfinished downloads. Up to ``max_parallel_dl`` files download at once, on fetchq's own
    threads. Callbacks and the event bus run on one Python thread of the service, each in a
    ``try``: one that raises is logged and the download goes on.

    With ``socket`` (or, when neither ``state`` nor ``socket`` is given, ``$FETCHQ_SOCKET``) the
    service is a client of the fetchqd listening there instead: the same methods and job
    objects, the daemon's state, callbacks driven by its event log. ``max_parallel_dl`` and
    ``progress_interval`` are then the daemon's settings, and stopping the service leaves the
    daemon's downloads running. ``list_jobs``, ``cancel_all_jobs`` and ``prune_jobs`` act on
    every job of the daemon, and the event bus hears of all of them.

    ``requests_session`` is accepted for compatibility and ignored. ``progress_interval`` is the
    shortest time, in seconds, between two progress callbacks of one job.

    The queue starts at once; ``stop()`` (or leaving a ``with`` block) stops every transfer with
    its bytes kept for the next start.
    """

    def __init__(
        self,
        max_parallel_dl: int = 5,
        event_bus: Any = None,
        requests_session: Any = None,
        *,
        state: Union[str, "os.PathLike[str]", None] = None,
        socket: Union[str, "os.PathLike[str]", None] = None,
        progress_interval: float = 1.0,
    ) -> None:
        if requests_session is not None:
            warnings.warn("fetchq does its own HTTP; requests_session is ignored", stacklevel=2)
        if socket is None and state is None:
            socket = os.environ.get("FETCHQ_SOCKET") or None
        if socket is not None and state is not None:
            raise ValueError("state= and socket= exclude each other: fetchqd keeps its own state")
        self._socket = os.fspath(socket) if socket is not None else None
        self._max_parallel = int(max_parallel_dl)
        self._event_bus = event_bus
        self._progress_interval = float(progress_interval)
        self._tmpdir: Optional[str] = None
        if state is None and self._socket is None:
            self._tmpdir = tempfile.mkdtemp(prefix="fetchq-state-")
            state = os.path.join(self._tmpdir, "state.db")
            weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
        self._state = os.fspath(state) if state is not None else None
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._jobs: Dict[int, DownloadJob] = {}  # one live object per job; guarded by _lock
        self._callbacks: Dict[int, Dict[str, Optional[DownloadEventHandler]]] = {}
        self._awaiting: Set[int] = set()  # jobs whose last callback has yet to run
        self._last_progress: Dict[int, int] = {}  # bytes of the last progress callback
        self._delivered = 0  # events delivered so far; guarded by _lock
        self._queue: Optional[_fetchq.Queue] = None
        self._dispatcher: Optional[threading.Thread] = None
        self.start()

    # ---- life cycle

    def start(self, *args: Any, **kwargs: Any) -> None:
        """Opens the queue on its state file, if it is not open, and resumes unfinished jobs."""
        if self._queue is not None and not self._queue.closed:
            return
        try:
            if self._socket is not None:
                queue = _fetchq.Queue.connect(self._socket)
            else:
                queue = _fetchq.Queue.open(self._state, self._max_parallel, self._progress_interval)
        except _fetchq.Error as e:
            _raise_for(e)
        self._queue = queue
        thread = threading.Thread(
            target=_dispatch, args=(queue, weakref.ref(self)), name="fetchq-callbacks", daemon=True
        )
        self._dispatcher = thread
        thread.start()
        weakref.finalize(self, _close, queue, thread)

    def stop(self, *args: Any, **kwargs: Any) -> None:
        """Stops every transfer with its bytes checkpointed, runs the callbacks still due and
        closes the queue. The jobs wait in the state file for the next start()."""
        queue, thread = self._queue, self._dispatcher
        if queue is None:
            return
        queue.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> "DownloadQueueService":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _live(self) -> "_fetchq.Queue":
        queue = self._queue
        if queue is None or queue.closed:
            raise ServiceInactiveException()
        return queue

    # ---- jobs

    def download(
        self,
        source: Any,
        dest: Union[str, "os.PathLike[str]"],
        priority: int = 10,
        access_token: Optional[str] = None,
        on_start: Optional[DownloadEventHandler] = None,
        on_progress: Optional[DownloadEventHandler] = None,
        on_complete: Optional[DownloadEventHandler] = None,
        on_cancelled: Optional[DownloadEventHandler] = None,
        on_error: Optional[Callable[..., Any]] = None,
    ) -> DownloadJob:
        """Queues a download of ``source`` and returns its job at once.

        ``dest`` is an existing folder (the file takes the server's name, from its
        Content-Disposition header or else the URL), a path ending in "/" (the same, the folder
        is created), or the file's own path. A relative path is taken from the current folder.
        ``access_token`` is sent as a Bearer token to the URL's own host only, stored apart from
        the job and never shown. Lower ``priority`` runs first. Each callback gets the job; a
        two-argument ``on_error`` gets the job and a DownloadError.
        """
        queue = self._live()
        text = os.fspath(dest)
        folder = text.endswith("/")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        target = os.path.normpath(path)
        if folder or path.is_dir():
            target = target.rstrip("/") + "/"
        callbacks = {
            "on_start": on_start,
            "on_progress": on_progress,
            "on_complete": on_complete,
            "on_error": on_error,
            "on_cancelled": on_cancelled,
        }
        # Held across the submission: the dispatcher takes this lock before it looks a job up, so
        # the job's callbacks are known before its first event is delivered.
        with self._lock:
            try:
                snap = queue.download(str(source), target, int(priority), access_token)
            except _fetchq.Error as e:
                _raise_for(e)
            job = self._adopt(snap)
            self._callbacks[job.id] = callbacks
            self._awaiting.add(job.id)
            self._last_progress.pop(job.id, None)
        return job

    def _adopt(self, snap: Mapping[str, Any]) -> DownloadJob:
        """The live object of the job in snap, updated from it. Called with _lock held."""
        job_id = int(snap["id"])
        job = self._jobs.get(job_id)
        if job is None:
            job = DownloadJob._from_snapshot(snap)
            self._jobs[job_id] = job
        else:
            job._update(snap)
        return job

    def list_jobs(self) -> List[DownloadJob]:
        """Every job in the state file, oldest first (ended ones until prune_jobs())."""
        try:
            snaps = self._live().list_jobs()
        except _fetchq.Error as e:
            _raise_for(e)
        with self._lock:
            return [self._adopt(s) for s in snaps]

    def id_to_job(self, id: int) -> DownloadJob:
        """The job with this id; UnknownJobIDException when there is none."""
        try:
            snap = self._live().id_to_job(int(id))
        except _fetchq.Error as e:
            _raise_for(e, id)
        if snap is None:
            raise UnknownJobIDException(f"Unrecognized job: {id}")
        with self._lock:
            return self._adopt(snap)

    def _control(self, name: str, job: Union[DownloadJob, int]) -> DownloadJob:
        job_id = job.id if isinstance(job, DownloadJob) else int(job)
        try:
            snap = getattr(self._live(), name)(job_id)
        except _fetchq.Error as e:
            _raise_for(e, job_id)
        with self._lock:
            return self._adopt(snap)

    def cancel_job(self, job: Union[DownloadJob, int]) -> None:
        """Cancels a waiting, running or paused job; its partial file is removed. A job that
        already ended is left as it is."""
        try:
            self._control("cancel_job", job)
        except FetchqError as e:
            if e.code != "wrong_state":
                raise

    def pause_job(self, job: Union[DownloadJob, int]) -> DownloadJob:
        """Stops a waiting or running job with its bytes kept, until resume_job()."""
        return self._control("pause_job", job)

    def resume_job(self, job: Union[DownloadJob, int]) -> DownloadJob:
        """Queues a paused job again; it goes on from the bytes it had."""
        result = self._control("resume_job", job)
        with self._lock:
            self._awaiting.add(result.id)
        return result

    def retry_job(self, job: Union[DownloadJob, int]) -> DownloadJob:
        """Queues a job that ended in error again."""
        result = self._control("retry_job", job)
        with self._lock:
            self._awaiting.add(result.id)
        return result

    def cancel_all_jobs(self) -> int:
        """Cancels every waiting, running and paused job; returns how many."""
        try:
            return int(self._live().cancel_all_jobs())
        except _fetchq.Error as e:
            _raise_for(e)
            raise  # not reached

    def prune_jobs(self) -> int:
        """Removes the ended jobs (completed, cancelled, error) from the list; returns how many."""
        queue = self._live()
        try:
            removed = int(queue.prune_jobs())
            kept = {int(s["id"]) for s in queue.list_jobs()}
        except _fetchq.Error as e:
            _raise_for(e)
        with self._lock:
            for job_id in [i for i in self._jobs if i not in kept]:
                del self._jobs[job_id]
                self._callbacks.pop(job_id, None)
                self._awaiting.discard(job_id)
                self._last_progress.pop(job_id, None)
        return removed

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits until no job is waiting or running, then for their last callbacks. Ctrl-C
        interrupts it with KeyboardInterrupt (the jobs go on, checkpointed as ever). False when
        ``timeout`` seconds passed first."""
        return self._join([], timeout)

    def wait_for_job(self, job: Union[DownloadJob, int], timeout: float = 0) -> DownloadJob:
        """Waits until this job ended (or was paused); ``timeout`` 0 waits for ever. Raises
        TimeoutError when it did not end in time."""
        job_id = job.id if isinstance(job, DownloadJob) else int(job)
        if not self._join([job_id], timeout if timeout > 0 else None):
            raise TimeoutError(f"job {job_id} did not end within {timeout} s")
        return self.id_to_job(job_id)

    def _join(self, ids: List[int], timeout: Optional[float]) -> bool:
        queue = self._live()
        deadline = None if timeout is None else time.monotonic() + timeout
        # Short slices with the GIL released: Python gets to run its signal handlers between them.
        while True:
            slice_ = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
            try:
                if queue.join(slice_, ids):
                    break
            except _fetchq.Error as e:
                _raise_for(e)
            if deadline is not None and time.monotonic() >= deadline:
                return False
        try:
            snaps = queue.list_jobs()
        except _fetchq.Error as e:
            _raise_for(e)
        ended = {int(s["id"]) for s in snaps if s["status"] in ("completed", "error", "cancelled")}
        if ids:
            ended &= set(ids)
        grace = time.monotonic() + _CALLBACK_GRACE
        with self._cv:
            delivered = self._delivered
            while self._awaiting & ended and not queue.events_done():
                if self._delivered != delivered:  # a slow callback is not a stuck one
                    delivered = self._delivered
                    grace = time.monotonic() + _CALLBACK_GRACE
                left = grace - time.monotonic()
                if left <= 0:
                    logger.warning("fetchq: callbacks of jobs %s still pending after join", sorted(self._awaiting & ended))
                    break
                self._cv.wait(min(left, 0.1))
            for s in snaps:
                self._adopt(s)
        return True

    # ---- events (the dispatcher thread)

    def _deliver(self, kind: str, snap: Mapping[str, Any]) -> None:
        with self._lock:
            job_id = int(snap["id"])
            job = self._jobs.get(job_id)
            if job is None:
                job = self._adopt(snap)
            elif not (job.in_terminal_state and kind not in _TERMINAL_KINDS):
                # A late progress snapshot never takes an ended job back.
                job._update(snap)
            callbacks = self._callbacks.get(job_id, {})
            last = self._last_progress.get(job_id, -1)
        if kind == "complete" and last < job.bytes:
            # The queue reports the final size with the completion; progress watchers (a tqdm
            # bar) see it first, as the event log shows it.
            self._call(callbacks.get("on_progress"), job, "on_progress")
            self._emit("progress", job)
        if kind == "progress":
            with self._lock:
                self._last_progress[job_id] = job.bytes
        name = _KIND_CALLBACK.get(kind)
        if name is not None:
            if kind == "error":
                self._call(callbacks.get(name), job, name, DownloadError(job.error_type, job.error))
            else:
                self._call(callbacks.get(name), job, name)
            self._emit(kind, job)
        with self._cv:
            self._delivered += 1
            if kind in _TERMINAL_KINDS:
                self._awaiting.discard(job_id)
                self._cv.notify_all()

    @staticmethod
    def _call(fn: Optional[Callable[..., Any]], job: DownloadJob, name: str, exc: Optional[Exception] = None) -> None:
        if fn is None:
            return
        try:
            if exc is not None and _accepts_two(fn):
                fn(job, exc)
            else:
                fn(job)
        except Exception:
            logger.exception("fetchq: %s callback of job %d raised; the download goes on", name, job.id)

    def _emit(self, kind: str, job: DownloadJob) -> None:
        bus = self._event_bus
        if bus is None:
            return
        source = job.source
        path = os.fspath(job.download_path) if job.download_path else None
        payloads = {
            "started": ("emit_download_started", {"source": source, "download_path": path}),
            "progress": (
                "emit_download_progress",
                {"source": source, "download_path": path, "current_bytes": job.bytes, "total_bytes": job.total_bytes},
            ),
            "complete": (
                "emit_download_complete",
                {"source": source, "download_path": path, "total_bytes": job.total_bytes},
            ),
            "error": ("emit_download_error", {"source": source, "error_type": job.error_type, "error": job.error}),
            "cancelled": ("emit_download_cancelled", {"source": source, "download_path": path}),
        }
        if kind not in payloads:
            return
        method, payload = payloads[kind]
        try:
            _bus_call(bus, method, job, payload)
        except Exception:
            logger.exception("fetchq: event bus %s for job %d raised; the download goes on", method, job.id)


def _close(queue: "_fetchq.Queue", thread: threading.Thread) -> None:
    """Closes the queue of a service that is collected, or still open at exit, and waits for its
    callback thread. That thread is a daemon; left running into the interpreter's finalization,
    it would be ended while it waits for the GIL in C++ code, which aborts the process."""
    queue.close()
    if thread is not threading.current_thread():
        thread.join(timeout=60)


def _dispatch(queue: "_fetchq.Queue", service_ref: "weakref.ref[DownloadQueueService]") -> None:
    """The dispatcher thread: takes the queue's events (waiting with the GIL released) and runs
    the callbacks, until the queue is closed and every event is delivered."""
    while True:
        event = queue.next_event(0.25)
        if event is None:
            if queue.events_done():
                break
            continue
        service = service_ref()
        if service is None:
            continue
        try:
            service._deliver(*event)
        except Exception:
            logger.exception("fetchq: delivering a %s event failed", event[0])
        del service
    service = service_ref()
    if service is not None:
        with service._cv:
            service._cv.notify_all()
