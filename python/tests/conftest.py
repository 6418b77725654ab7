"""Fixtures of the fetchq Python tests: a real HTTP server on 127.0.0.1 and fresh folders."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

import pytest


@dataclass
class Resource:
    body: bytes
    filename: Optional[str] = None  # sent as Content-Disposition
    chunk: int = 0  # >0: sent in chunks of this size...
    delay: float = 0.0  # ...with this pause after each


@dataclass
class Server:
    """What the handler serves, and the requests it saw (path, Range header or None)."""

    port: int = 0
    resources: Dict[str, Resource] = field(default_factory=dict)
    requests: List[Tuple[str, Optional[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes, **kw) -> str:
        self.resources[path] = Resource(body, **kw)
        return self.url(path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append((path, rng))
        res = state.resources.get(path)
        if res is None:
            body = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return
        data, start, status = res.body, 0, 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m:
            start = int(m.group(1))
            end = int(m.group(2)) + 1 if m.group(2) else len(data)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, len(data))
            status = 206
            part = data[start:end]
        else:
            part = data
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
        self.send_header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(part) - 1}/{len(data)}")
        if res.filename:
            self.send_header("Content-Disposition", f'attachment; filename="{res.filename}"')
        self.end_headers()
        if head:
            return
        try:
            if res.chunk <= 0:
                self.wfile.write(part)
                return
            for i in range(0, len(part), res.chunk):
                self.wfile.write(part[i : i + res.chunk])
                self.wfile.flush()
                if res.delay:
                    time.sleep(res.delay)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server():
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def downloads(tmp_path):
    d = tmp_path / "downloads"
    d.mkdir()
    return d


@pytest.fixture
def fetchqd(tmp_path):
    """A fetchqd of the build tree on its own database; yields its socket path."""
    import socket as socketlib
    import subprocess

    bin_dir = os.environ.get("FETCHQ_BIN_DIR")
    if not bin_dir:
        pytest.skip("FETCHQ_BIN_DIR (the build's src/ folder, holding fetchqd) is not set")
    sock = tmp_path / "fetchqd.sock"
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "no-config"))
    env.pop("FETCHQ_SOCKET", None)
    proc = subprocess.Popen([os.path.join(bin_dir, "fetchqd"), "--db", str(tmp_path / "fetchqd.db"),
                             "--socket", str(sock), "--log-level", "warn"], env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "fetchqd exited"
            assert time.monotonic() < deadline, "fetchqd did not open its socket"
            if sock.exists():
                with socketlib.socket(socketlib.AF_UNIX) as s:
                    try:
                        s.connect(str(sock))
                        break
                    except OSError:
                        pass
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["embedded", "socket"])
def service(request, tmp_path):
    """The service in both modes: the queue in this process, and a client of fetchqd."""
    from fetchq import DownloadQueueService

    if request.param == "socket":
        svc = DownloadQueueService(socket=request.getfixturevalue("fetchqd"))
    else:
        svc = DownloadQueueService(state=tmp_path / "state.db", progress_interval=0.05)
    try:
        yield svc
    finally:
        svc.stop()


def payload(size: int, seed: int = 1) -> bytes:
    """size bytes that differ from one seed to another."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


@pytest.fixture(autouse=True)
def time_limit():
    """A test that hangs ends the run with every thread's traceback instead of blocking ctest."""
    import faulthandler

    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
