"""DownloadQueueService in embedded mode: the behaviours InvokeAI's own tests check, and
fetchq's additions (pause, resume, retry, restart on the same state file)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

import pytest

from conftest import payload
from fetchq import (
    DownloadError,
    DownloadJob,
    DownloadJobStatus,
    DownloadQueueService,
    InvalidDownloadRequest,
    ServiceInactiveException,
    UnknownJobIDException,
)


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_basic_download_into_a_folder(service, server, downloads):
    body = payload(200_000)
    url = server.add("/files/model.bin", body)
    job = service.download(source=url, dest=downloads)
    assert isinstance(job, DownloadJob)
    assert job.status in (DownloadJobStatus.WAITING, DownloadJobStatus.RUNNING)
    assert job.dest == downloads and job.priority == 10 and job.id >= 0

    assert service.join(timeout=30)
    assert job.status == DownloadJobStatus.COMPLETED == "completed"
    assert job.complete and job.in_terminal_state and not job.cancelled
    assert job.download_path == downloads / "model.bin"
    assert isinstance(job.download_path, Path)
    assert job.bytes == job.total_bytes == len(body)
    assert job.job_started and job.job_ended and job.error is None and job.error_type is None
    assert (downloads / "model.bin").read_bytes() == body
    # One object per job: the queue hands back the one download() gave.
    assert service.id_to_job(job.id) is job
    assert service.list_jobs() == [job]


def test_download_to_a_file_path_and_priorities(service, server, tmp_path):
    url = server.add("/files/a.bin", payload(1000))
    target = tmp_path / "sub" / "named.bin"
    job = service.download(url, target, priority=3)
    assert service.join(timeout=30)
    assert job.priority == 3
    assert job.download_path == target
    assert target.read_bytes() == payload(1000)


def test_content_disposition_names_the_file(service, server, downloads):
    url = server.add("/api/download/models/7", payload(5000), filename="real-name.safetensors")
    job = service.download(url, str(downloads))
    assert service.join(timeout=30)
    assert job.download_path == downloads / "real-name.safetensors"
    assert job.download_path.read_bytes() == payload(5000)


def test_errors(service, server, downloads):
    errors, two_arg = [], []
    job = service.download(server.url("/nothing-here"), downloads, on_error=lambda j: errors.append(j.status))
    job2 = service.download(server.url("/nothing-either"), downloads,
                            on_error=lambda j, exc: two_arg.append(exc))
    assert service.join(timeout=30)
    assert job.status == DownloadJobStatus.ERROR and job.errored
    assert job.error_type == "HTTPError(404 Not Found)"
    assert job.error
    assert job.download_path is None or not job.download_path.exists()
    assert errors == [DownloadJobStatus.ERROR]
    assert len(two_arg) == 1 and isinstance(two_arg[0], DownloadError)
    assert two_arg[0].error_type == job2.error_type

    with pytest.raises(InvalidDownloadRequest):
        service.download("ftp://127.0.0.1/file", downloads)
    with pytest.raises(ValueError):  # InvalidDownloadRequest is a ValueError too
        service.download("not a url", downloads)


def test_unknown_job_id_raises(service):
    with pytest.raises(UnknownJobIDException):
        service.id_to_job(12345)
    with pytest.raises(UnknownJobIDException):
        service.cancel_job(12345)
    with pytest.raises(LookupError):
        service.pause_job(12345)


class RecordingBus:
    """An event bus with the seed's methods, keeping (name, payload) in order."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def _add(self, name, **payload):
        with self.lock:
            self.events.append((name, payload))

    def emit_download_started(self, source, download_path):
        self._add("download_started", source=source, download_path=download_path)

    def emit_download_progress(self, source, download_path, current_bytes, total_bytes):
        self._add("download_progress", source=source, download_path=download_path,
                  current_bytes=current_bytes, total_bytes=total_bytes)

    def emit_download_complete(self, source, download_path, total_bytes):
        self._add("download_complete", source=source, download_path=download_path, total_bytes=total_bytes)

    def emit_download_error(self, source, error_type, error):
        self._add("download_error", source=source, error_type=error_type, error=error)

    def emit_download_cancelled(self, source, download_path=None):
        self._add("download_cancelled", source=source)


def test_event_bus_gets_the_events_in_order(tmp_path, server, downloads):
    bus = RecordingBus()
    body = payload(300_000)
    url = server.add("/files/slowish.bin", body, chunk=20_000, delay=0.02)
    with DownloadQueueService(event_bus=bus, state=tmp_path / "s.db", progress_interval=0.02) as q:
        job = q.download(url, downloads)
        assert q.join(timeout=30)
        assert job.complete
        names = [n for n, _ in bus.events]
        assert names[0] == "download_started"
        assert names[-1] == "download_complete"
        assert set(names[1:-1]) == {"download_progress"} and len(names) >= 3
        started = bus.events[0][1]
        assert started == {"source": url, "download_path": str(downloads / "slowish.bin")}
        progress = [p for n, p in bus.events if n == "download_progress"]
        assert [p["current_bytes"] for p in progress] == sorted(p["current_bytes"] for p in progress)
        assert progress[-1]["current_bytes"] == progress[-1]["total_bytes"] == len(body)
        assert bus.events[-1][1] == {"source": url, "download_path": str(downloads / "slowish.bin"),
                                     "total_bytes": len(body)}

        bus.events.clear()
        q.download(server.url("/missing"), downloads)
        assert q.join(timeout=30)
        name, error = bus.events[-1]
        assert name == "download_error"
        assert error["source"] == server.url("/missing")
        assert error["error_type"] == "HTTPError(404 Not Found)" and error["error"]

        bus.events.clear()
        slow = server.add("/files/cancelled.bin", payload(2_000_000), chunk=8192, delay=0.05)
        started = threading.Event()
        job = q.download(slow, downloads, on_start=lambda j: started.set())
        assert started.wait(20)
        q.cancel_job(job)
        assert q.join(timeout=30)
        assert [n for n, _ in bus.events][0] == "download_started"
        assert bus.events[-1] == ("download_cancelled", {"source": slow})


def test_event_bus_methods_taking_the_job(server, downloads, tmp_path):
    seen = []

    class JobBus:
        def emit_download_started(self, job):
            seen.append(("started", job.id))

        def emit_download_complete(self, job):
            seen.append(("complete", job.id, job.status))

    url = server.add("/files/x.bin", payload(1000))
    with DownloadQueueService(event_bus=JobBus(), state=tmp_path / "j.db") as q:
        job = q.download(url, downloads)
        assert q.join(timeout=30)
    assert seen == [("started", job.id), ("complete", job.id, DownloadJobStatus.COMPLETED)]


def test_raising_callbacks_do_not_stop_the_download(service, server, downloads, caplog):
    calls = {"start": 0, "progress": 0, "complete": 0}
    threads = set()

    def bad(name):
        def cb(job):
            calls[name] += 1
            threads.add(threading.current_thread().name)
            raise RuntimeError(f"{name} callback failed on purpose")
        return cb

    body = payload(200_000)
    url = server.add("/files/cb.bin", body, chunk=20_000, delay=0.01)
    with caplog.at_level(logging.ERROR, logger="fetchq"):
        job = service.download(url, downloads, on_start=bad("start"), on_progress=bad("progress"),
                               on_complete=bad("complete"))
        assert service.join(timeout=30)
    assert job.complete
    assert (downloads / "cb.bin").read_bytes() == body
    assert calls["start"] == 1 and calls["complete"] == 1 and calls["progress"] >= 1
    assert threads == {"fetchq-callbacks"}
    assert "callback failed on purpose" in caplog.text


def test_cancel(service, server, downloads):
    body = payload(2_000_000)
    url = server.add("/files/big.bin", body, chunk=16_384, delay=0.02)
    started = threading.Event()
    cancelled = []
    job = service.download(url, downloads, on_start=lambda j: started.set(),
                           on_cancelled=lambda j: cancelled.append(j.status))
    waiting = service.download(server.add("/files/later.bin", payload(10)), downloads, priority=50)
    assert started.wait(20)
    service.cancel_job(job)
    assert job.status == DownloadJobStatus.CANCELLED and job.cancelled
    assert service.join(timeout=30)
    assert cancelled == [DownloadJobStatus.CANCELLED]
    assert not (downloads / "big.bin").exists()
    assert not (downloads / "big.bin.part").exists()
    assert waiting.complete
    service.cancel_job(job)  # cancelling an ended job changes nothing


def test_cancel_all_jobs(service, server, downloads):
    url = server.add("/files/slow.bin", payload(1_000_000), chunk=8192, delay=0.05)
    jobs = [service.download(url, downloads / f"f{i}.bin") for i in range(3)]
    assert service.cancel_all_jobs() == 3
    assert service.join(timeout=30)
    assert all(j.status == DownloadJobStatus.CANCELLED for j in jobs)


def test_prune(service, server, downloads):
    ok = service.download(server.add("/files/p.bin", payload(100)), downloads)
    bad = service.download(server.url("/missing"), downloads)
    assert service.join(timeout=30)
    paused_url = server.add("/files/slow.bin", payload(1_000_000), chunk=8192, delay=0.05)
    paused = service.pause_job(service.download(paused_url, downloads))
    assert paused.status == DownloadJobStatus.PAUSED
    assert len(service.list_jobs()) == 3
    assert service.prune_jobs() == 2
    assert service.list_jobs() == [paused]
    for gone in (ok, bad):
        with pytest.raises(UnknownJobIDException):
            service.id_to_job(gone.id)


def test_pause_resume_and_retry(service, server, downloads):
    body = payload(1_500_000)
    url = server.add("/files/pr.bin", body, chunk=16_384, delay=0.02)
    job = service.download(url, downloads)
    assert wait_until(lambda: service.id_to_job(job.id).bytes > 100_000)
    service.pause_job(job)
    assert job.status == DownloadJobStatus.PAUSED
    assert service.join(timeout=30)  # a paused job is not waited for
    service.resume_job(job)
    assert service.join(timeout=60)
    assert job.complete
    assert (downloads / "pr.bin").read_bytes() == body
    assert any(path == "/files/pr.bin" and rng and not rng.startswith("bytes=0-") for path, rng in server.requests)

    failing = service.download(server.url("/files/later.bin"), downloads)
    assert service.join(timeout=30) and failing.errored
    server.add("/files/later.bin", payload(10))
    service.retry_job(failing)
    assert service.join(timeout=30)
    assert failing.complete


def test_stop_and_reopen_resumes(tmp_path, server, downloads):
    body = payload(3_000_000)
    url = server.add("/files/resume.bin", body, chunk=16_384, delay=0.01)
    state = tmp_path / "state.db"
    q = DownloadQueueService(state=state)
    job = q.download(url, downloads)
    assert wait_until(lambda: q.id_to_job(job.id).bytes > 200_000)
    q.stop()
    with pytest.raises(ServiceInactiveException):
        q.download(url, downloads)
    server.requests.clear()
    with DownloadQueueService(state=state) as again:
        assert again.join(timeout=60)
        resumed = again.id_to_job(job.id)
        assert resumed.complete
    assert hashlib.sha256((downloads / "resume.bin").read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    ranges = [rng for path, rng in server.requests if path == "/files/resume.bin"]
    assert ranges and all(r and not r.startswith("bytes=0-") for r in ranges), ranges


def test_model_dump_never_holds_the_token(service, server, downloads):
    url = server.add("/files/t.bin", payload(100))
    job = service.download(url, downloads, access_token="s3cret-token")
    assert service.join(timeout=30)
    text = job.model_dump_json()
    assert "s3cret" not in text and "s3cret" not in repr(job)
    dumped = job.model_dump()
    assert dumped["status"] is DownloadJobStatus.COMPLETED and isinstance(dumped["dest"], Path)
    assert "access_token" not in dumped
    assert text.startswith('{"source":')


def test_requests_session_is_ignored_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="requests_session"):
        q = DownloadQueueService(requests_session=object(), state=tmp_path / "w.db")
    q.stop()


def test_tqdm_progress_draws_one_bar_per_job_to_the_end(service, server, downloads):
    import io

    from fetchq import TqdmProgress

    out = io.StringIO()
    bars = TqdmProgress(file=out, mininterval=0)
    sizes = {"one.bin": 150_000, "two.bin": 90_000}
    jobs = [service.download(server.add(f"/files/{n}", payload(size, size), chunk=10_000, delay=0.01), downloads,
                             on_progress=bars.update) for n, size in sizes.items()]
    assert service.join(timeout=30)
    assert all(j.complete for j in jobs)
    text = out.getvalue()
    for name in sizes:
        assert f"{name}: 100%" in text, text
    assert bars._bars == {}  # each bar closed at its total


def test_wait_for_job(service, server, downloads):
    quick = service.download(server.add("/files/quick.bin", payload(1000)), downloads)
    assert service.wait_for_job(quick, timeout=30) is quick and quick.complete
    slow = service.download(server.add("/files/slow.bin", payload(2_000_000), chunk=8192, delay=0.05), downloads)
    with pytest.raises(TimeoutError):
        service.wait_for_job(slow, timeout=0.3)
    service.cancel_job(slow)
    assert service.wait_for_job(slow.id, timeout=30).status == DownloadJobStatus.CANCELLED
