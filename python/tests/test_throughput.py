"""The GIL is not on the transfer path: 50 parallel downloads end while a callback holds the
callback thread, and a backlog of progress reports stays bounded meanwhile."""

from __future__ import annotations

import sqlite3
import threading
import time

from conftest import payload
from fetchq import DownloadQueueService

JOBS = 50
SIZE = 200_000


def completed_on_record(state) -> int:
    """Jobs completed as the queue's database records them: the queue's own view, which the
    callbacks do not hold up."""
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT count(*) FROM jobs WHERE status = 'completed'").fetchone()[0]
    finally:
        db.close()


def wait_completed_on_record(state, seconds=60) -> int:
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline:
        done = completed_on_record(state)
        if done == JOBS:
            break
        time.sleep(0.1)
    return done


def test_held_callbacks_do_not_hold_the_transfers(tmp_path, server, downloads):
    """The first progress callback does not return until every download has ended as the
    queue's database records it: were the transfers waiting on the callbacks (or the GIL they
    hold), they would never end and the wait would run out."""
    urls = [server.add(f"/held/f{i}.bin", payload(SIZE, i), chunk=4096, delay=0.02) for i in range(JOBS)]
    state = tmp_path / "held.db"
    release = threading.Event()
    calls = 0
    lock = threading.Lock()

    def held(job):
        nonlocal calls
        with lock:
            calls += 1
        release.wait(timeout=120)

    with DownloadQueueService(max_parallel_dl=JOBS, state=state, progress_interval=0.02) as q:
        jobs = [q.download(u, downloads / "held" / f"f{i}.bin", on_progress=held) for i, u in enumerate(urls)]
        done = wait_completed_on_record(state)
        with lock:
            calls_while_held = calls
        release.set()
        assert done == JOBS, f"{done} of {JOBS} downloads ended while a callback was held"
        assert calls_while_held == 1, calls_while_held
        assert q.join(timeout=120)
        assert all(j.complete for j in jobs)
        for i, j in enumerate(jobs):
            assert j.download_path.read_bytes() == payload(SIZE, i)
    assert calls > JOBS  # the reports that waited were delivered after


def test_a_backlog_of_progress_stays_bounded_and_ends_on_the_newest(tmp_path, server, downloads):
    """While the callback thread is held up until every download has ended, progress reports
    pile up only to a bound (1,000 waiting); past it each job's newest report replaces its last
    one. The callbacks then end on each job's whole size."""
    seen = {}
    calls = 0
    lock = threading.Lock()

    def held_up(job):
        nonlocal calls
        with lock:
            calls += 1
            first = calls == 1
            seen[job.id] = job.bytes
        if first:
            ended.append(wait_completed_on_record(state))  # every download runs and ends meanwhile

    state = tmp_path / "backlog.db"
    ended = []
    urls = [server.add(f"/backlog/f{i}.bin", payload(SIZE, i), chunk=4096, delay=0.02) for i in range(JOBS)]
    with DownloadQueueService(max_parallel_dl=JOBS, state=state, progress_interval=0.02) as q:
        jobs = [q.download(u, downloads / "backlog" / f"f{i}.bin", on_progress=held_up) for i, u in enumerate(urls)]
        assert q.join(timeout=120)
        assert all(j.complete for j in jobs)
        for i, j in enumerate(jobs):
            assert j.download_path.read_bytes() == payload(SIZE, i)
    assert ended == [JOBS], ended
    # About 50 reports a job (1 s or more at one each 20 ms), 2,500 in all, came while the first
    # callback was held: the first 1,000 waiting are kept as they came, then one per job (and
    # its other events).
    assert 900 <= calls <= 1000 + 3 * JOBS + 10, calls
    assert len(seen) == JOBS and all(b == SIZE for b in seen.values()), seen
