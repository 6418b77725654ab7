"""The package in programs of their own: Ctrl-C in join(), and SIGKILL then a restart on the
same state file, which must resume with a Range request and end with the right file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import payload
from fetchq import DownloadQueueService

CHILD = Path(__file__).resolve().parent / "child_download.py"


def start_child(url, state, dest, mode):
    return subprocess.Popen([sys.executable, str(CHILD), url, str(state), str(dest), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def read_until(proc, predicate, timeout=20.0):
    """Lines of proc's stdout until one satisfies predicate; fails on timeout or EOF."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child ended: {proc.wait()} {proc.stderr.read()}")
        if predicate(line.strip()):
            return line.strip()
    raise AssertionError("child did not get there in time")


def finish_on_same_state(state, server, path, body):
    server.requests.clear()
    with DownloadQueueService(state=state) as again:
        assert again.join(timeout=60)
        jobs = again.list_jobs()
    assert [j.status.value for j in jobs] == ["completed"]
    assert hashlib.sha256(jobs[0].download_path.read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    ranges = [rng for p, rng in server.requests if p == path]
    assert ranges and all(r and not r.startswith("bytes=0-") for r in ranges), ranges


def test_ctrl_c_in_join_raises_keyboard_interrupt_and_keeps_the_bytes(tmp_path, server, downloads):
    body = payload(4_000_000)
    url = server.add("/files/ctrlc.bin", body, chunk=16_384, delay=0.02)
    state = tmp_path / "state.db"
    child = start_child(url, state, downloads, "join")
    try:
        read_until(child, lambda line: line == "started")
        time.sleep(1.0)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        read_until(child, lambda line: line == "interrupted", timeout=5)
        assert time.monotonic() - sent < 2.0  # promptly, not at the end of the download
        assert child.wait(timeout=20) == 3
    finally:
        child.kill()
        child.wait()
    finish_on_same_state(state, server, "/files/ctrlc.bin", body)


def test_sigkill_then_restart_resumes_with_range(tmp_path, server, downloads):
    body = payload(4_000_000, 7)
    url = server.add("/files/killed.bin", body, chunk=16_384, delay=0.02)
    state = tmp_path / "state.db"
    child = start_child(url, state, downloads, "poll")
    try:
        started = time.monotonic()
        # Past the queue's first checkpoint (every 2 s) with a good part of the file on disk.
        read_until(child, lambda line: line.startswith("bytes") and int(line.split()[1]) > 1_000_000
                   and time.monotonic() - started > 2.5, timeout=30)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()
    assert not (downloads / "killed.bin").exists()
    finish_on_same_state(state, server, "/files/killed.bin", body)
