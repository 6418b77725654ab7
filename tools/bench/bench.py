#!/usr/bin/env python3
"""fetchq benchmark harness: fetchq against curl, wget2, aria2c (and dd) over loopback against nginx.

Standard library only. Normally started by tools/bench/run.sh, which installs the tools, builds
fetchq, makes the work folder and stops whatever is left at exit. See tools/bench/README.md.

Timing: wall time with time.monotonic() around the command(s); CPU time is the user+sys of the
finished child processes (resource.getrusage(RUSAGE_CHILDREN) deltas), plus, for fetchqd, the
daemon's own utime+stime from /proc/PID/stat over the same interval.
"""

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

FULL = {
    "runs": 3,
    "s1_count": 2000, "s1_size": 16 * KiB,
    "s2_count": 200, "s2_size": 1 * MiB,
    "parallel": [5, 16],
    "s3_size": 2 * GiB,
    "s6_rate_mb": 200,   # nginx limit_rate in MiB/s for S6
    "s4_count": 100000,
    "s5_count": 1000, "s5_rate_kb": 16, "s5_window_s": 10,
    "s8_size": 128 * MiB, "s8_rate_mb": 8,   # S8: one file, nginx limit_rate in MiB/s per connection
    "s8_curl_runs": 1,   # curl's one connection takes size / rate (16 s) whatever the machine does
    "s9_size": 256 * MiB, "s9_rate_mbit": 400,   # S9: one file over a link shaped to this rate
    "rl_rate": 5 * MiB, "rl_seconds": 12, "rl_jobs": 20,   # RL: fetchq's own --limit-rate
    "timeout": 900,
}
QUICK = {
    "runs": 1,
    "s1_count": 200, "s1_size": 16 * KiB,
    "s2_count": 20, "s2_size": 1 * MiB,
    "parallel": [5, 16],
    "s3_size": 64 * MiB,
    "s6_rate_mb": 32,
    "s4_count": 5000,
    "s5_count": 200, "s5_rate_kb": 16, "s5_window_s": 4,
    "s8_size": 64 * MiB, "s8_rate_mb": 8,
    "s8_curl_runs": 1,
    "s9_size": 96 * MiB, "s9_rate_mbit": 400,
    "rl_rate": 5 * MiB, "rl_seconds": 6, "rl_jobs": 20,
    "timeout": 120,
}
SCENARIOS = ["S1", "S2", "S3", "S6", "S8", "S9", "S4", "S5", "RL"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def first_line(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20)
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        return lines[0].strip() if lines else "?"
    except (OSError, subprocess.SubprocessError) as e:
        return f"unavailable ({e})"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid):
    """utime+stime in seconds of a running process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        fields = data[data.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def cpu_ticks():
    """The machine's CPU time counters (user nice system idle iowait irq softirq steal) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return [0] * 8


def proc_status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fmt(x, digits=2):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Run:
    """One measured run of one tool."""

    def __init__(self, wall=None, cpu=None, ok=True, note=""):
        self.wall, self.cpu, self.ok, self.note = wall, cpu, ok, note
        self.extra = {}

    def as_dict(self):
        d = {"wall_s": self.wall, "cpu_s": self.cpu, "ok": self.ok, "note": self.note}
        d.update(self.extra)
        return d


class Bench:
    def __init__(self, args):
        self.args = args
        self.cfg = dict(QUICK if args.quick else FULL)
        if args.runs:
            self.cfg["runs"] = args.runs
        if args.s8_mib:
            self.cfg["s8_size"] = args.s8_mib * MiB
        self.work = os.path.abspath(args.workdir)
        self.www = os.path.join(self.work, "www")
        self.out = os.path.join(self.work, "out")
        self.state = os.path.join(self.work, "state")
        self.ngx = os.path.join(self.work, "nginx")
        self.bin_dir = os.path.abspath(args.bin_dir)
        self.fetchq = os.path.join(self.bin_dir, "fetchq")
        self.fetchqd = os.path.join(self.bin_dir, "fetchqd")
        self.nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx_proc = None
        self.port = None
        self.base = None
        self.expected = {}      # scenario -> {name: (size, sha256)}
        self.results = {}       # scenario -> data
        self.failures = []
        self.notes = []
        self.env = {}
        self.daemons = []
        self.load = {}          # scenario -> (load average at its start, machine CPU busy fraction during it)
        self.only = list(SCENARIOS)
        self.link = None        # S9's shaped link while it exists: names, addresses, its nginx

    # ------------------------------------------------------------------ setup
    def environment(self):
        e = self.env
        e["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        e["mode"] = "quick" if self.args.quick else "full"
        e["runs per tool"] = str(self.cfg["runs"])
        e["nproc"] = str(os.cpu_count())
        cpu = "?"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        e["cpu"] = cpu
        try:
            with open("/proc/meminfo") as f:
                mem = int(f.readline().split()[1])
            e["memory"] = f"{mem / (1 << 20):.1f} GiB"
        except (OSError, ValueError, IndexError):
            pass
        e["kernel"] = platform.release()
        e["filesystem of work folder"] = self.fs_of(self.work)
        e["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        e["fetchq"] = first_line([self.fetchq, "--version"])
        e["fetchqd"] = first_line([self.fetchqd, "--version"])
        e["fetchq get --connections"] = "yes" if self.has_connections() else "no (S8 and S9 skip their rows)"
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        e["fetchq binaries"] = self.bin_dir
        e["source tree of this script"] = first_line(["git", "-C", repo, "describe", "--always", "--dirty"])
        e["curl"] = first_line(["curl", "--version"])
        e["aria2c"] = first_line(["aria2c", "--version"])
        e["wget2"] = first_line(["wget2", "--version"])
        e["nginx"] = first_line([self.nginx_bin, "-v"])
        e["python"] = platform.python_version()

    def has_connections(self):
        """Whether `fetchq get` takes --connections N (segmented downloads), from its --help."""
        if not hasattr(self, "_connections"):
            try:
                p = subprocess.run([self.fetchq, "get", "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=20)
                self._connections = "--connections" in p.stdout
            except (OSError, subprocess.SubprocessError):
                self._connections = False
        return self._connections

    @staticmethod
    def fs_of(path):
        best, fstype, dev = "", "?", "?"
        try:
            with open("/proc/mounts") as f:
                for line in f:
                    parts = line.split()
                    mnt = parts[1]
                    if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                        best, fstype, dev = mnt, parts[2], parts[0]
        except OSError:
            pass
        return f"{fstype} ({dev} on {best})"

    def check_disk(self):
        c = self.cfg
        other = 2 * (c["s1_count"] * c["s1_size"] + c["s2_count"] * c["s2_size"]) + (GiB if not self.args.quick else 256 * MiB)
        if "S8" in self.only:
            other += 2 * c["s8_size"]
        if "S9" in self.only:
            other += 2 * c["s9_size"]
        need = other + 2 * c["s3_size"] + 64 * MiB
        free = shutil.disk_usage(self.work).free
        log(f"free space in {self.work}: {free / GiB:.1f} GiB, needed about {need / GiB:.1f} GiB")
        if free < need:
            size = (free - other - 64 * MiB) // 2
            size = (size // MiB) * MiB
            if size < 16 * MiB:
                raise SystemExit(f"bench: not enough disk space in {self.work} ({free / GiB:.2f} GiB free)")
            msg = (f"not enough free disk for a {c['s3_size'] // MiB} MiB S3/S6 file; "
                   f"scaled down to {size // MiB} MiB")
            log(msg)
            self.notes.append(msg)
            c["s3_size"] = size

    def make_data(self):
        c = self.cfg
        log("making test data (random bytes, sha256 noted)")
        for scen, count, size in (("S1", c["s1_count"], c["s1_size"]), ("S2", c["s2_count"], c["s2_size"])):
            d = os.path.join(self.www, scen.lower())
            os.makedirs(d, exist_ok=True)
            exp = {}
            for i in range(count):
                name = f"f{i:05d}.bin"
                data = os.urandom(size)
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
                exp[name] = (size, hashlib.sha256(data).hexdigest())
            self.expected[scen] = exp
        d = os.path.join(self.www, "big")
        os.makedirs(d, exist_ok=True)
        h = hashlib.sha256()
        left = c["s3_size"]
        with open(os.path.join(d, "big.bin"), "wb") as f:
            while left > 0:
                n = min(left, 4 * MiB)
                b = os.urandom(n)
                f.write(b)
                h.update(b)
                left -= n
        self.expected["big"] = {"big.bin": (c["s3_size"], h.hexdigest())}
        if "S8" in self.only:   # only S8 uses it: other runs do not write its file
            d = os.path.join(self.www, "s8")
            os.makedirs(d, exist_ok=True)
            h = hashlib.sha256()
            left = c["s8_size"]
            with open(os.path.join(d, "capped.bin"), "wb") as f:
                while left > 0:
                    n = min(left, 4 * MiB)
                    b = os.urandom(n)
                    f.write(b)
                    h.update(b)
                    left -= n
            self.expected["S8"] = {"capped.bin": (c["s8_size"], h.hexdigest())}
        if "S9" in self.only:   # S9's one big file, served over the shaped link
            d = os.path.join(self.www, "s9")
            os.makedirs(d, exist_ok=True)
            h = hashlib.sha256()
            left = c["s9_size"]
            with open(os.path.join(d, "link.bin"), "wb") as f:
                while left > 0:
                    n = min(left, 4 * MiB)
                    b = os.urandom(n)
                    f.write(b)
                    h.update(b)
                    left -= n
            self.expected["S9"] = {"link.bin": (c["s9_size"], h.hexdigest())}
        if "RL" in self.only:   # one file for 8 connections, and rl_jobs files that add up to it
            d = os.path.join(self.www, "rl")
            os.makedirs(d, exist_ok=True)
            size = c["rl_rate"] * c["rl_seconds"]
            exp = {}
            for name, n in [("one.bin", size)] + [(f"j{i:02d}.bin", size // c["rl_jobs"])
                                                  for i in range(c["rl_jobs"])]:
                data = os.urandom(n)
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
                exp[name] = (n, hashlib.sha256(data).hexdigest())
            self.expected["RL"] = exp
        d = os.path.join(self.www, "s4")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "one.bin"), "wb") as f:
            f.write(os.urandom(1 * MiB))
        for root, dirs, files in os.walk(self.work):
            for x in dirs:
                os.chmod(os.path.join(root, x), 0o755)
            for x in files:
                os.chmod(os.path.join(root, x), 0o644)
        os.chmod(self.work, 0o755)
        os.sync()

    def nginx_temp_lines(self, prefix):
        """nginx's temp paths inside prefix, for the modules this nginx was built with."""
        v = subprocess.run([self.nginx_bin, "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True).stdout
        temps = []
        for flag, directive in (("client-body", "client_body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"),
                                ("uwsgi", "uwsgi"), ("scgi", "scgi")):
            if f"--http-{flag}-temp-path" in v or directive == "client_body":
                temps.append(f"  {directive}_temp_path {prefix}/tmp/{directive};")
        return "\n".join(temps)

    def start_nginx(self):
        os.makedirs(os.path.join(self.ngx, "tmp"), exist_ok=True)
        os.chmod(self.ngx, 0o755)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        temp_lines = self.nginx_temp_lines(self.ngx)
        conf = f"""# fetchq bench: a throwaway nginx on 127.0.0.1, started with -c/-p by bench.py
daemon off;
worker_processes 1;
worker_rlimit_nofile 8192;
pid {self.ngx}/nginx.pid;
error_log {self.ngx}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  default_type application/octet-stream;
{temp_lines}
  log_format fqbytes '$msec $status $bytes_sent $body_bytes_sent "$http_range" "$request_uri"';
  log_format fqconn '$connection $status $request_method $bytes_sent "$http_range"';
  server {{
    listen 127.0.0.1:{self.port};
    server_name localhost;
    root {self.www};
    location = /ping {{ return 200 "ok\\n"; }}
    location / {{ }}
    # S6: the big file, throttled, with an access log of the bytes sent per request
    location /slow/ {{
      alias {self.www}/big/;
      limit_rate {self.cfg['s6_rate_mb']}m;
      access_log {self.ngx}/slow.log fqbytes;
    }}
    # S8: one file from a server that caps each connection (limit_rate is per request, so per
    # connection); the log tells how many requests and connections each client used
    location /capped/ {{
      alias {self.www}/s8/;
      limit_rate {self.cfg['s8_rate_mb']}m;
      access_log {self.ngx}/capped.log fqconn;
    }}
    # S9 when the link cannot be shaped: the same file with no cap at all (loopback is the limit)
    location /link/ {{
      alias {self.www}/s9/;
      access_log {self.ngx}/link.log fqconn;
    }}
    # S4: any name serves one 1 MiB file at 1 KiB/s, so nothing finishes
    location /crawl/ {{
      limit_rate 1k;
      try_files /s4/one.bin =404;
    }}
    # S5: the same file, slowly enough that a thousand transfers run at once for a while
    location /trickle/ {{
      limit_rate {self.cfg['s5_rate_kb']}k;
      try_files /s4/one.bin =404;
    }}
  }}
}}
"""
        path = os.path.join(self.ngx, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        errlog = open(os.path.join(self.ngx, "stderr.log"), "ab")
        self.nginx_proc = subprocess.Popen(
            [self.nginx_bin, "-c", path, "-p", self.ngx + "/", "-e", os.path.join(self.ngx, "error.log")],
            stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            if self.nginx_proc.poll() is not None:
                raise SystemExit("bench: nginx did not start:\n" + self.tail(os.path.join(self.ngx, "error.log")))
            try:
                with urllib.request.urlopen(self.base + "/ping", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("bench: nginx did not answer on " + self.base)
            time.sleep(0.05)
        log(f"nginx {self.nginx_proc.pid} serves {self.www} on {self.base}")

    def stop_nginx(self, p=None):
        p = p or self.nginx_proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGQUIT)   # graceful stop
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log("nginx stopped")

    @staticmethod
    def tail(path, n=15):
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # ------------------------------------------------------------ utilities
    def fresh_dir(self, *parts):
        d = os.path.join(self.out, *parts)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def fresh_state(self, name):
        os.makedirs(self.state, exist_ok=True)
        p = os.path.join(self.state, name)
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(p + suffix)
            except FileNotFoundError:
                pass
        return p

    def clean_out(self):
        shutil.rmtree(self.out, ignore_errors=True)
        os.makedirs(self.out, exist_ok=True)

    def timed(self, steps, extra_cpu=None, timeout=None):
        """Runs each argv of steps in turn; returns a Run with wall and CPU time."""
        timeout = timeout or self.cfg["timeout"]
        os.sync()   # earlier runs' dirty pages go to disk now, not during this run
        x0 = extra_cpu() if extra_cpu else 0.0
        c0 = children_cpu()
        t0 = time.monotonic()
        ok, note = True, ""
        for argv in steps:
            try:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, timeout=timeout)
            except subprocess.TimeoutExpired:
                ok, note = False, f"timed out after {timeout}s: {os.path.basename(argv[0])}"
                break
            if p.returncode != 0:
                err = p.stderr.decode(errors="replace").strip().splitlines()
                ok = False
                note = f"{os.path.basename(argv[0])} exit {p.returncode}: {' | '.join(err[-3:])[:300]}"
                break
        t1 = time.monotonic()
        c1 = children_cpu()
        x1 = extra_cpu() if extra_cpu else 0.0
        return Run(t1 - t0, (c1 - c0) + (x1 - x0), ok, note)

    def verify(self, run, out_dir, expected, sha):
        """Checks every expected file in out_dir: size always, sha256 when sha is true."""
        if not run.ok:
            return run
        t0 = time.monotonic()
        missing = bad = 0
        for name, (size, digest) in expected.items():
            p = os.path.join(out_dir, name)
            try:
                if os.path.getsize(p) != size:
                    bad += 1
                    continue
            except OSError:
                missing += 1
                continue
            if sha and sha256_file(p) != digest:
                bad += 1
        parts = [n for n in os.listdir(out_dir) if n.endswith(".part")]
        if missing or bad or parts:
            run.ok = False
            run.note = (f"{missing} missing, {bad} with wrong {'sha256/size' if sha else 'size'}, "
                        f"{len(parts)} .part left")
        else:
            run.extra["checked"] = "sha256" if sha else "size"
        run.extra["verify_s"] = time.monotonic() - t0
        return run

    def record_failure(self, scen, label, run):
        if not run.ok:
            msg = f"{scen} {label}: {run.note}"
            self.failures.append(msg)
            log("FAILED " + msg)

    # -------------------------------------------------------------- fetchqd
    def start_daemon(self, name, max_parallel):
        db = self.fresh_state(name + ".db")
        sock = os.path.join(self.state, name + ".sock")
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass
        logf = open(os.path.join(self.state, name + ".log"), "ab")
        p = subprocess.Popen([self.fetchqd, "--db", db, "--socket", sock, "--max-parallel", str(max_parallel),
                              "--download-root", self.work, "--log-level", "warn"],
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
        logf.close()
        pidfile = os.path.join(self.work, f"fetchqd-{p.pid}.pid")
        with open(pidfile, "w") as f:
            f.write(str(p.pid))
        self.daemons.append((p, pidfile))
        deadline = time.monotonic() + 15
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"fetchqd exited with {p.returncode}: " +
                                   self.tail(os.path.join(self.state, name + ".log"), 5))
            r = subprocess.run([self.fetchq, "stats", "--socket", sock], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("fetchqd did not answer on " + sock)
            time.sleep(0.05)
        return p, db, sock

    def stop_daemon(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"fetchqd {p.pid} did not stop within 15 s of SIGTERM; killing it")
                self.failures.append(f"fetchqd {p.pid} did not stop within 15 s of SIGTERM")
                p.kill()
                p.wait()
        for q, pidfile in list(self.daemons):
            if q is p:
                self.daemons.remove((q, pidfile))
                try:
                    os.unlink(pidfile)
                except FileNotFoundError:
                    pass

    # ------------------------------------------------------- S1, S2: many files
    def many_files(self, scen):
        c = self.cfg
        count = c[scen.lower() + "_count"]
        size = c[scen.lower() + "_size"]
        expected = self.expected[scen]
        urls = [f"{self.base}/{scen.lower()}/{n}" for n in sorted(expected)]
        listfile = os.path.join(self.work, f"{scen.lower()}-urls.txt")
        with open(listfile, "w") as f:
            f.write("\n".join(urls) + "\n")
        tools = ["fetchq get", "fetchqd add+wait", "aria2c", "curl", "wget2"]
        data = {"count": count, "size": size, "groups": {}}
        for par in c["parallel"]:
            runs = {t: [] for t in tools}
            for r in range(c["runs"]):
                for tool in tools:
                    # S1 keeps every run's files until the scenario ends. On ext4 without a journal
                    # (as here) a new inode skips those freed in the last minute (six if their
                    # block is still dirty), so deleting 2,000 files before each run made the next
                    # tool's file creations scan thousands of freed inodes: curl took 1.9 s
                    # instead of 0.4 s. S2's 200 files of 1 MiB are deleted to save space.
                    if scen != "S1":
                        self.clean_out()
                    d = self.fresh_dir(f"{scen}-j{par}-r{r + 1}-{tool.split()[0]}")
                    run = self.one_many(tool, par, urls, listfile, d, expected)
                    run.extra["files_per_s"] = count / run.wall if run.ok and run.wall else None
                    runs[tool].append(run)
                    self.record_failure(scen, f"-j {par} {tool} run {r + 1}", run)
                    log(f"{scen} -j {par} run {r + 1} {tool}: {fmt(run.wall, 3)} s, cpu {fmt(run.cpu, 3)} s"
                        + ("" if run.ok else "  FAILED"))
            data["groups"][par] = runs
        self.clean_out()
        self.results[scen] = data

    def one_many(self, tool, par, urls, listfile, d, expected):
        if tool == "fetchq get":
            db = self.fresh_state("get.db")
            run = self.timed([[self.fetchq, "get", "-j", str(par), "--quiet", "--state", db, "-d", d] + urls])
            return self.verify(run, d, expected, sha=True)
        if tool == "fetchqd add+wait":
            try:
                p, db, sock = self.start_daemon("s12", par)
            except RuntimeError as e:
                return Run(None, None, False, str(e))
            try:
                run = self.timed([[self.fetchq, "add", "-i", listfile, "-d", d, "--socket", sock],
                                  [self.fetchq, "wait", "--socket", sock]],
                                 extra_cpu=lambda: proc_cpu(p.pid))
            finally:
                self.stop_daemon(p)
            return self.verify(run, d, expected, sha=True)
        if tool == "aria2c":
            run = self.timed([["aria2c", "-j", str(par), "-i", listfile, "-d", d, "--allow-overwrite=true",
                               "--auto-file-renaming=false", "--console-log-level=warn", "--summary-interval=0"]])
        elif tool == "curl":
            run = self.timed([["curl", "-sS", "--fail", "--parallel", "--parallel-max", str(par), "-Z",
                               "--remote-name-all", "--output-dir", d] + urls])
        elif tool == "wget2":
            run = self.timed([["wget2", "--max-threads", str(par), "-q", "-P", d, "-i", listfile]])
        else:
            raise ValueError(tool)
        return self.verify(run, d, expected, sha=False)

    # ---------------------------------------------------------- S3: one big file
    def big_file(self):
        c = self.cfg
        size = c["s3_size"]
        expected = self.expected["big"]
        url = f"{self.base}/big/big.bin"
        # "--connections 1" is fetchq without segments, side by side with its default (adaptive).
        tools = ["fetchq get", "fetchq get --connections 1", "curl", "curl + sync", "wget2", "aria2c",
                 "dd (disk ceiling)"]
        runs = {t: [] for t in tools}
        for r in range(c["runs"]):
            for tool in tools:
                self.clean_out()
                d = self.fresh_dir("S3")
                f = os.path.join(d, "big.bin")
                if tool.startswith("fetchq get"):
                    db = self.fresh_state("s3.db")
                    run = self.timed([[self.fetchq, "get", "--quiet", "--state", db, "-o", f] + tool.split()[2:] + [url]])
                    run = self.verify(run, d, expected, sha=True)
                elif tool == "curl":
                    run = self.verify(self.timed([["curl", "-sS", "--fail", "-o", f, url]]), d, expected, False)
                elif tool == "curl + sync":
                    run = self.verify(self.timed([["curl", "-sS", "--fail", "-o", f, url], ["sync", f]]),
                                      d, expected, False)
                elif tool == "wget2":
                    run = self.verify(self.timed([["wget2", "-q", "-O", f, url]]), d, expected, False)
                elif tool == "aria2c":
                    run = self.verify(self.timed([["aria2c", "-d", d, "-o", "big.bin", "--allow-overwrite=true",
                                                   "--auto-file-renaming=false", "--console-log-level=warn",
                                                   "--summary-interval=0", url]]), d, expected, False)
                else:
                    run = self.timed([["dd", "if=/dev/zero", f"of={os.path.join(d, 'dd.bin')}", "bs=1M",
                                       f"count={size // MiB}", "conv=fsync", "status=none"]])
                if run.ok and run.wall:
                    run.extra["mb_per_s"] = size / run.wall / 1e6
                    run.extra["cpu_per_gib"] = run.cpu / (size / GiB)
                runs[tool].append(run)
                self.record_failure("S3", f"{tool} run {r + 1}", run)
                log(f"S3 run {r + 1} {tool}: {fmt(run.wall, 3)} s, cpu {fmt(run.cpu, 3)} s"
                    + ("" if run.ok else "  FAILED"))
        self.clean_out()
        self.results["S3"] = {"size": size, "runs": runs}

    # ------------------------------------------------------ S6: waste after kill -9
    def slow_log_lines(self):
        try:
            with open(os.path.join(self.ngx, "slow.log")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def crash_waste(self):
        c = self.cfg
        size = c["s3_size"]
        expected = self.expected["big"]
        url = f"{self.base}/slow/big.bin"
        tools = ["fetchq get", "curl -C -", "aria2c -c"]
        runs = {t: [] for t in tools}
        for r in range(c["runs"]):
            for tool in tools:
                self.clean_out()
                d = self.fresh_dir("S6")
                f = os.path.join(d, "big.bin")
                if tool == "fetchq get":
                    db = self.fresh_state("s6.db")
                    first = [self.fetchq, "get", "--quiet", "--state", db, "-o", f, url]
                    again = first
                    # A segmented .part is preallocated at its full size: its length says nothing
                    # of progress, the job's recorded bytes do.
                    watch = self.recorded_bytes(db)
                elif tool == "curl -C -":
                    first = ["curl", "-sS", "--fail", "-o", f, url]
                    again = ["curl", "-sS", "--fail", "-C", "-", "-o", f, url]
                    watch = f
                else:
                    common = ["-d", d, "-o", "big.bin", "--auto-file-renaming=false", "--console-log-level=warn",
                              "--summary-interval=0", "--file-allocation=none"]
                    first = ["aria2c"] + common + [url]
                    again = ["aria2c", "-c"] + common + [url]
                    watch = f
                run = self.one_crash(first, again, watch, size)
                if run.ok:
                    run = self.verify(run, d, expected, sha=True)
                runs[tool].append(run)
                self.record_failure("S6", f"{tool} run {r + 1}", run)
                log(f"S6 run {r + 1} {tool}: killed at {fmt(run.extra.get('killed_at_mib'), 1)} MiB, "
                    f"sent/size {fmt(run.extra.get('waste'), 3)}" + ("" if run.ok else "  FAILED " + run.note))
        self.clean_out()
        self.results["S6"] = {"size": size, "rate_mib_s": c["s6_rate_mb"], "runs": runs}

    @staticmethod
    def recorded_bytes(db):
        """How many bytes fetchq's state file DB says its job holds (0 before there is one)."""
        def read():
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
                try:
                    row = con.execute("SELECT bytes FROM jobs ORDER BY id DESC LIMIT 1").fetchone()
                finally:
                    con.close()
                return int(row[0]) if row and row[0] is not None else 0
            except sqlite3.Error:
                return 0
        return read

    def one_crash(self, first, again, watch, size):
        """Kills `first` once `watch` (a file's path, or a function giving the bytes so far)
        holds half of `size`, then runs `again`."""
        def grown_now():
            if callable(watch):
                return watch()
            try:
                return os.path.getsize(watch)
            except OSError:
                return 0
        os.sync()
        before = len(self.slow_log_lines())
        half = size // 2
        expected_s = size / (self.cfg["s6_rate_mb"] * MiB)
        errpath = os.path.join(self.work, "s6-first.err")
        with open(errpath, "wb") as errf:
            p = subprocess.Popen(first, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
        deadline = time.monotonic() + max(30, 4 * expected_s)
        grown = 0
        while p.poll() is None and time.monotonic() < deadline:
            grown = grown_now()
            if grown >= half:
                break
            time.sleep(0.01)
        if p.poll() is not None:
            err = " | ".join(self.tail(errpath, 3).strip().splitlines())[:300]
            return Run(None, None, False, f"{os.path.basename(first[0])} ended (exit {p.returncode}) before it "
                                          f"could be killed at half: {err}")
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed_at = grown_now()
        t0 = time.monotonic()
        try:
            q = subprocess.run(again, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=max(60, 4 * expected_s))
            rc, err = q.returncode, q.stderr.decode(errors="replace").strip()
        except subprocess.TimeoutExpired:
            rc, err = -1, "timed out"
        rerun_s = time.monotonic() - t0
        # nginx logs a request when it ends; the killed one may be logged a moment later.
        lines = []
        wait_until = time.monotonic() + 10
        while time.monotonic() < wait_until:
            lines = self.slow_log_lines()[before:]
            if len(lines) >= 2:
                time.sleep(0.3)
                lines = self.slow_log_lines()[before:]
                break
            time.sleep(0.1)
        sent = 0
        resumed_from = None
        for line in lines:
            parts = line.split()
            try:
                sent += int(parts[2])
            except (IndexError, ValueError):
                pass
            # the Range of the request that resumed: "bytes=N-"
            if len(parts) > 4 and parts[4].startswith('"bytes='):
                try:
                    start = int(parts[4][len('"bytes='):].split("-")[0])
                    resumed_from = start if resumed_from is None else max(resumed_from, start)
                except ValueError:
                    pass
        run = Run(None, None, rc == 0, "" if rc == 0 else f"rerun exit {rc}: {err[-300:]}")
        run.extra.update({"killed_at_mib": killed_at / MiB, "requests": len(lines), "bytes_sent": sent,
                          "resumed_from_mib": (resumed_from or 0) / MiB,
                          "waste": sent / size if size else None, "rerun_s": rerun_s})
        return run

    # ---------------------------------------- S8: one big file, each connection capped
    def capped_log_lines(self):
        try:
            with open(os.path.join(self.ngx, "capped.log")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def capped(self):
        c = self.cfg
        size = c["s8_size"]
        expected = self.expected["S8"]
        url = f"{self.base}/capped/capped.bin"
        tools = ["curl", "aria2c -x16 -s16 -k1M", "aria2c -x4 -s4 -k1M", "fetchq get"]
        if self.has_connections():
            tools += ["fetchq get --connections 16", "fetchq get --connections 4"]
        tools.append("fetchqd add+wait")
        # curl's single connection takes size / cap whatever the load, so it runs fewer times
        curl_runs = min(c["runs"], c["s8_curl_runs"])
        runs = {t: [] for t in tools}
        for r in range(c["runs"]):
            for tool in tools:
                if tool == "curl" and r >= curl_runs:
                    continue
                self.clean_out()
                d = self.fresh_dir("S8")
                f = os.path.join(d, "capped.bin")
                before = len(self.capped_log_lines())
                if tool.startswith("fetchq get"):
                    db = self.fresh_state("s8.db")
                    argv = [self.fetchq, "get", "--quiet", "--state", db, "-o", f, url]
                    if "--connections" in tool:
                        argv[2:2] = ["--connections", tool.split()[-1]]
                    run = self.timed([argv])
                elif tool == "fetchqd add+wait":
                    try:
                        p, db, sock = self.start_daemon("s8", 16)
                    except RuntimeError as e:
                        run = Run(None, None, False, str(e))
                    else:
                        try:
                            run = self.timed([[self.fetchq, "add", "-d", d, "--socket", sock, url],
                                              [self.fetchq, "wait", "--socket", sock]],
                                             extra_cpu=lambda: proc_cpu(p.pid))
                        finally:
                            self.stop_daemon(p)
                elif tool == "curl":
                    run = self.timed([["curl", "-sS", "--fail", "-o", f, url]])
                else:
                    n = tool.split()[1][2:]
                    run = self.timed([["aria2c", "-x", n, "-s", n, "-k", "1M", "-d", d, "-o", "capped.bin",
                                       "--allow-overwrite=true", "--auto-file-renaming=false",
                                       "--console-log-level=warn", "--summary-interval=0", url]])
                run = self.verify(run, d, expected, sha=True)
                # what nginx saw: requests for the file and distinct connections they came on (nginx
                # logs a request when it ends; one cut short by the client may be logged a moment later)
                lines = self.capped_log_lines()[before:]
                settle = time.monotonic() + 2
                while time.monotonic() < settle:
                    time.sleep(0.2)
                    again = self.capped_log_lines()[before:]
                    if len(again) == len(lines):
                        break
                    lines = again
                run.extra["requests"] = len(lines)
                run.extra["connections"] = len({l.split()[0] for l in lines if l.split()})
                if run.ok and run.wall:
                    run.extra["mb_per_s"] = size / run.wall / 1e6
                runs[tool].append(run)
                self.record_failure("S8", f"{tool} run {r + 1}", run)
                log(f"S8 run {r + 1} {tool}: {fmt(run.wall, 3)} s, cpu {fmt(run.cpu, 3)} s, "
                    f"{run.extra['requests']} requests on {run.extra['connections']} connections"
                    + ("" if run.ok else "  FAILED " + run.note))
        self.clean_out()
        self.results["S8"] = {"size": size, "rate_mib_s": c["s8_rate_mb"], "runs": runs,
                              "connections_option": self.has_connections(), "curl_runs": curl_runs}

    # ---------------------------------------- S9: one big file, the link is the bottleneck
    def ip(self, *argv, ns=None):
        """Runs an iproute2 command (in network namespace ns when given); raises on failure."""
        cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=20)
        if p.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed: {p.stdout.strip()[:200]}")
        return p.stdout

    def shape_link(self):
        """Makes S9's link: a network namespace joined to this one by a veth pair, a tbf qdisc at
        s9_rate_mbit on the namespace's end (the server -> client direction) and an nginx of its own
        listening in the namespace. Returns None when it is ready, else why not (everything made is
        removed again). The names go to WORK/s9-link too, for run.sh's cleanup if this process dies."""
        if os.geteuid() != 0:
            return "not root: network namespaces and tc need root"
        for t in ("ip", "tc"):
            if not shutil.which(t):
                return f"`{t}` is not installed (iproute2)"
        pid = os.getpid()
        ns, host, peer = f"fqbench{pid}", f"fqb{pid}h", f"fqb{pid}n"
        rate = self.cfg["s9_rate_mbit"]
        prefix = os.path.join(self.work, "nginx-s9")
        self.link = {"ns": ns, "host": host, "peer": peer, "proc": None, "prefix": prefix,
                     "log": os.path.join(prefix, "link.log")}
        with open(os.path.join(self.work, "s9-link"), "w") as f:
            f.write(f"{ns} {host}\n")
        try:
            used = self.ip("ip", "-4", "-o", "addr", "show")
            third = pid % 250
            for _ in range(250):   # a /30 in 10.213.0.0/16 that no interface here uses
                if f" 10.213.{third}." not in used:
                    break
                third = (third + 1) % 250
            host_ip, ns_ip = f"10.213.{third}.1", f"10.213.{third}.2"
            self.ip("ip", "netns", "add", ns)
            self.ip("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            self.ip("ip", "link", "set", peer, "netns", ns)
            self.ip("ip", "addr", "add", f"{host_ip}/30", "dev", host)
            self.ip("ip", "link", "set", host, "up")
            self.ip("ip", "addr", "add", f"{ns_ip}/30", "dev", peer, ns=ns)
            self.ip("ip", "link", "set", peer, "up", ns=ns)
            self.ip("ip", "link", "set", "lo", "up", ns=ns)
            self.ip("tc", "qdisc", "add", "dev", peer, "root", "tbf", "rate", f"{rate}mbit", "burst", "256kb",
                    "latency", "50ms", ns=ns)
            qdisc = self.ip("tc", "qdisc", "show", "dev", peer, ns=ns).strip().splitlines()
            self.link.update({"host_ip": host_ip, "ns_ip": ns_ip, "port": 8080,
                              "qdisc": qdisc[0] if qdisc else "?"})
            os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
            conf = f"""# fetchq bench S9: a throwaway nginx in network namespace {ns}, behind a shaped veth
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  default_type application/octet-stream;
{self.nginx_temp_lines(prefix)}
  log_format fqconn '$connection $status $request_method $bytes_sent "$http_range"';
  server {{
    listen {ns_ip}:8080;
    server_name localhost;
    root {self.www};
    location = /ping {{ return 200 "ok\\n"; }}
    location /link/ {{
      alias {self.www}/s9/;
      access_log {prefix}/link.log fqconn;
    }}
  }}
}}
"""
            path = os.path.join(prefix, "nginx.conf")
            with open(path, "w") as f:
                f.write(conf)
            errlog = open(os.path.join(prefix, "stderr.log"), "ab")
            # `ip netns exec` execs nginx in the namespace, so the pid is nginx's
            self.link["proc"] = subprocess.Popen(
                ["ip", "netns", "exec", ns, self.nginx_bin, "-c", path, "-p", prefix + "/",
                 "-e", os.path.join(prefix, "error.log")],
                stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog, start_new_session=True)
            errlog.close()
            base = f"http://{ns_ip}:8080"
            deadline = time.monotonic() + 10
            while True:
                if self.link["proc"].poll() is not None:
                    raise RuntimeError("nginx in the namespace did not start: " +
                                       self.tail(os.path.join(prefix, "error.log"), 5))
                try:
                    with urllib.request.urlopen(base + "/ping", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx in the namespace did not answer on " + base)
                time.sleep(0.05)
            self.link["base"] = base
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            self.unshape_link()
            return str(e)
        log(f"S9 link: {host} {host_ip} <-> {peer} {ns_ip} in netns {ns}; {self.link['qdisc']}")
        return None

    def unshape_link(self):
        """Removes S9's link: its nginx, the veth pair (with its qdisc) and the namespace."""
        link, self.link = self.link, None
        if not link:
            return
        if link.get("proc") is not None:
            self.stop_nginx(link["proc"])
        try:   # in case `ip netns exec` forked rather than exec'd: the pid nginx wrote
            with open(os.path.join(link["prefix"], "nginx.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        for argv in (["ip", "link", "del", link["host"]], ["ip", "netns", "del", link["ns"]]):
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            os.unlink(os.path.join(self.work, "s9-link"))
        except OSError:
            pass
        log(f"S9 link removed (netns {link['ns']}, veth {link['host']})")

    def link_drops(self):
        """Packets the shaped link's tbf qdisc has dropped so far (None when unshaped): drops at the
        bottleneck mean TCP retransmissions, which is what many connections on one link risk."""
        if not self.link:
            return None
        try:
            out = self.ip("tc", "-s", "qdisc", "show", "dev", self.link["peer"], ns=self.link["ns"])
            m = re.search(r"dropped (\d+)", out)
            return int(m.group(1)) if m else None
        except (RuntimeError, OSError, subprocess.SubprocessError):
            return None

    @staticmethod
    def log_lines(path):
        try:
            with open(path) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def link_capped(self):
        """S9: one big file with no per-connection cap: the link is the bottleneck, so splitting
        the file over connections cannot win, and must not lose: segmented fetchq against fetchq
        --connections 1, with aria2c -x16, aria2c -x1 and curl alongside."""
        c = self.cfg
        size = c["s9_size"]
        expected = self.expected["S9"]
        why_not = self.shape_link()
        try:
            if why_not is None:
                base, logpath = self.link["base"], self.link["log"]
                rate = c["s9_rate_mbit"]
                link = (f"shaped: veth pair into network namespace {self.link['ns']} (nginx there, clients here), "
                        f"`tc qdisc add dev {self.link['peer']} root tbf rate {rate}mbit burst 256kb latency 50ms` "
                        f"on the namespace's end ({rate} Mbit/s = {rate / 8:.0f} MB/s, Ethernet/IP/TCP headers "
                        "included)")
                ceiling = rate * 1e6 / 8
            else:
                base, logpath = self.base, os.path.join(self.ngx, "link.log")
                link = f"loopback, unshaped (shaping was not possible: {why_not})"
                ceiling = None
                self.notes.append(f"S9 link: {link}")
            log(f"S9 link: {link}")
            url = f"{base}/link/link.bin"
            tools = ["curl", "aria2c -x1", "aria2c -x16 -s16 -k1M"]
            if self.has_connections():
                tools += ["fetchq get --connections 1", "fetchq get", "fetchq get --connections 16"]
            else:
                tools += ["fetchq get"]
            runs = {t: [] for t in tools}
            for r in range(c["runs"]):
                for tool in tools:
                    self.clean_out()
                    d = self.fresh_dir("S9")
                    f = os.path.join(d, "link.bin")
                    before = len(self.log_lines(logpath))
                    drops0 = self.link_drops()
                    if tool.startswith("fetchq get"):
                        db = self.fresh_state("s9.db")
                        argv = [self.fetchq, "get", "--quiet", "--state", db, "-o", f, url]
                        if "--connections" in tool:
                            argv[2:2] = ["--connections", tool.split()[-1]]
                        run = self.timed([argv])
                    elif tool == "curl":
                        run = self.timed([["curl", "-sS", "--fail", "-o", f, url]])
                    else:
                        n = tool.split()[1][2:]
                        run = self.timed([["aria2c", "-x", n, "-s", n, "-k", "1M", "-d", d, "-o", "link.bin",
                                           "--allow-overwrite=true", "--auto-file-renaming=false",
                                           "--console-log-level=warn", "--summary-interval=0", url]])
                    drops1 = self.link_drops()
                    if drops0 is not None and drops1 is not None:
                        run.extra["drops"] = drops1 - drops0
                    run = self.verify(run, d, expected, sha=True)
                    lines = self.log_lines(logpath)[before:]
                    settle = time.monotonic() + 2
                    while time.monotonic() < settle:
                        time.sleep(0.2)
                        again = self.log_lines(logpath)[before:]
                        if len(again) == len(lines):
                            break
                        lines = again
                    run.extra["requests"] = len(lines)
                    run.extra["connections"] = len({l.split()[0] for l in lines if l.split()})
                    if run.ok and run.wall:
                        run.extra["mb_per_s"] = size / run.wall / 1e6
                    runs[tool].append(run)
                    self.record_failure("S9", f"{tool} run {r + 1}", run)
                    log(f"S9 run {r + 1} {tool}: {fmt(run.wall, 3)} s, {fmt(run.extra.get('mb_per_s'), 1)} MB/s, "
                        f"cpu {fmt(run.cpu, 3)} s, {run.extra['requests']} requests on "
                        f"{run.extra['connections']} connections, {run.extra.get('drops', '—')} packets dropped "
                        "at the link" + ("" if run.ok else "  FAILED " + run.note))
            self.clean_out()
            self.results["S9"] = {"size": size, "link": link, "shaped": why_not is None, "ceiling_b_s": ceiling,
                                  "runs": runs, "connections_option": self.has_connections()}
        finally:
            self.unshape_link()

    # ---------------------------------------- RL: fetchq's own rate limit
    def rate_limit(self):
        """fetchq get --limit-rate: bytes over wall time against the limit, for one file over 8
        connections and for rl_jobs files at once. The wall time includes start-up and the last
        file's rename, so a ratio a little under 1 is the limiter keeping to its budget."""
        c = self.cfg
        rate, size, n = c["rl_rate"], c["rl_rate"] * c["rl_seconds"], c["rl_jobs"]
        cases = {
            "1 job, --connections 8": ([f"{self.base}/rl/one.bin"], ["--connections", "8"], size),
            f"{n} jobs": ([f"{self.base}/rl/j{i:02d}.bin" for i in range(n)], ["-j", str(n)],
                          n * (size // n)),
        }
        runs = {k: [] for k in cases}
        for r in range(c["runs"]):
            for label, (urls, opts, total) in cases.items():
                self.clean_out()
                d = self.fresh_dir("RL")
                db = self.fresh_state("rl.db")
                argv = [self.fetchq, "get", "--quiet", "--state", db, "-d", d, "--limit-rate",
                        str(rate)] + opts + urls
                run = self.timed([argv])
                names = [u.rsplit("/", 1)[1] for u in urls]
                run = self.verify(run, d, {k: self.expected["RL"][k] for k in names}, sha=True)
                if run.ok and run.wall:
                    run.extra["bytes"] = total
                    run.extra["ratio"] = total / run.wall / rate
                runs[label].append(run)
                self.record_failure("RL", f"{label} run {r + 1}", run)
                log(f"RL run {r + 1} {label}: {fmt(run.wall, 3)} s, measured/limit "
                    f"{fmt(run.extra.get('ratio'), 4)}" + ("" if run.ok else "  FAILED " + run.note))
        self.clean_out()
        self.results["RL"] = {"rate": rate, "size": size, "jobs": n, "runs": runs}

    # ------------------------------------------------------------ S4: queue scale
    def queue_scale(self):
        c = self.cfg
        n = c["s4_count"]
        listfile = os.path.join(self.work, "s4-urls.txt")
        with open(listfile, "w") as f:
            for i in range(n):
                f.write(f"{self.base}/crawl/c{i:06d}.bin\n")
        data = {"count": n}
        self.clean_out()
        d = self.fresh_dir("S4")
        try:
            p, db, sock = self.start_daemon("s4", 1)
        except RuntimeError as e:
            self.failures.append(f"S4: {e}")
            self.results["S4"] = data
            return
        try:
            rss0 = proc_status_kib(p.pid, "VmRSS")
            run = self.timed([[self.fetchq, "add", "-i", listfile, "-d", d, "--socket", sock]],
                             extra_cpu=lambda: proc_cpu(p.pid))
            self.record_failure("S4", "add -i", run)
            data["accept_s"] = run.wall if run.ok else None
            data["accept_cpu_s"] = run.cpu if run.ok else None
            time.sleep(1)
            data["rss_before_kib"] = rss0
            data["rss_after_kib"] = proc_status_kib(p.pid, "VmRSS")
            data["hwm_kib"] = proc_status_kib(p.pid, "VmHWM")

            def one(label, argv, timeout=300):
                t0 = time.monotonic()
                try:
                    q = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.failures.append(f"S4 {label}: timed out after {timeout}s")
                    return None, None
                dt = time.monotonic() - t0
                if q.returncode != 0:
                    self.failures.append(f"S4 {label}: exit {q.returncode}: "
                                         f"{q.stderr.decode(errors='replace').strip()[-300:]}")
                    return None, None
                return dt, q.stdout

            mid = max(1, n // 2)
            data["show_s"], _ = one("show", [self.fetchq, "show", str(mid), "--socket", sock])
            data["show_json_s"], _ = one("show --json", [self.fetchq, "show", str(mid), "--json", "--socket", sock])
            data["list_running_s"], out = one("list --status running",
                                              [self.fetchq, "list", "--status", "running", "--json", "--socket", sock])
            data["stats_s"], out2 = one("stats", [self.fetchq, "stats", "--json", "--socket", sock])
            if out2:
                try:
                    data["stats"] = json.loads(out2)
                except ValueError:
                    pass
            data["list_waiting_s"], out3 = one("list --status waiting --json",
                                               [self.fetchq, "list", "--status", "waiting", "--json", "--socket", sock])
            if out3:
                try:
                    data["list_waiting_count"] = len(json.loads(out3))
                except ValueError:
                    pass
            data["list_db_running_s"], _ = one("list --status running --db",
                                               [self.fetchq, "list", "--status", "running", "--db", db])
            data["rss_end_kib"] = proc_status_kib(p.pid, "VmRSS")
            data["hwm_kib"] = proc_status_kib(p.pid, "VmHWM")
            data["db_bytes"] = sum(os.path.getsize(db + s) for s in ("", "-wal", "-shm") if os.path.exists(db + s))
            data["db_main_bytes"] = os.path.getsize(db) if os.path.exists(db) else None
            log(f"S4 fetchq: {n} jobs accepted in {fmt(data['accept_s'], 3)} s, RSS {data['rss_after_kib']} KiB, "
                f"db {data['db_bytes'] / MiB:.1f} MiB")
        finally:
            t0 = time.monotonic()
            self.stop_daemon(p)
            data["sigterm_stop_s"] = time.monotonic() - t0
        try:
            data["aria2"] = self.aria2_scale(listfile, n)
        except Exception as e:  # the comparison is a bonus; it must not sink the run
            self.failures.append(f"S4 aria2c: {e}")
        self.clean_out()
        self.results["S4"] = data

    # ---------------------------------------------- S5: many transfers at once
    def many_at_once(self):
        """fetchqd running s5_count throttled transfers at once: threads, memory, CPU, bytes/s."""
        c = self.cfg
        n, window = c["s5_count"], c["s5_window_s"]
        listfile = os.path.join(self.work, "s5-urls.txt")
        with open(listfile, "w") as f:
            for i in range(n):
                f.write(f"{self.base}/trickle/t{i:05d}.bin\n")
        data = {"count": n, "rate_kb": c["s5_rate_kb"], "window_s": window}
        self.results["S5"] = data
        self.clean_out()
        d = self.fresh_dir("S5")
        try:
            p, db, sock = self.start_daemon("s5", n)
        except RuntimeError as e:
            self.failures.append(f"S5: {e}")
            return

        def running():
            q = subprocess.run([self.fetchq, "stats", "--json", "--socket", sock], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
            try:
                return int(json.loads(q.stdout).get("running", 0)) if q.returncode == 0 else 0
            except ValueError:
                return 0

        def on_disk():
            total = 0
            for e in os.scandir(d):
                try:
                    total += e.stat().st_size
                except OSError:
                    pass
            return total

        try:
            r = subprocess.run([self.fetchq, "add", "-i", listfile, "-d", d, "--socket", sock],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
            if r.returncode != 0:
                self.failures.append(f"S5 add: exit {r.returncode}: {r.stderr.decode(errors='replace')[-300:]}")
                return
            t0 = time.monotonic()
            while running() < n and time.monotonic() - t0 < 60:
                time.sleep(0.2)
            data["running_at_start"] = running()
            data["ramp_s"] = time.monotonic() - t0
            if data["running_at_start"] < n:
                self.failures.append(f"S5: only {data['running_at_start']} of {n} transfers running after 60 s")
            # Let every transfer get past its first buffer fills before measuring the steady state.
            time.sleep(2)
            cpu0, bytes0, w0 = proc_cpu(p.pid), on_disk(), time.monotonic()
            threads_max, rss_max = 0, 0
            while time.monotonic() - w0 < window:
                threads_max = max(threads_max, proc_status_kib(p.pid, "Threads") or 0)
                rss_max = max(rss_max, proc_status_kib(p.pid, "VmRSS") or 0)
                time.sleep(0.25)
            cpu1, bytes1, w1 = proc_cpu(p.pid), on_disk(), time.monotonic()
            data["running_at_end"] = running()
            data["threads_max"] = threads_max
            data["rss_max_kib"] = rss_max
            data["hwm_kib"] = proc_status_kib(p.pid, "VmHWM")
            data["cpu_s"] = cpu1 - cpu0
            data["cpu_share"] = (cpu1 - cpu0) / (w1 - w0)
            data["bytes_per_s"] = (bytes1 - bytes0) / (w1 - w0)
            data["expected_bytes_per_s"] = n * c["s5_rate_kb"] * KiB
            log(f"S5 fetchqd: {data['running_at_end']} running, {threads_max} threads, RSS {rss_max} KiB, "
                f"CPU {data['cpu_share'] * 100:.1f}% of a core, {data['bytes_per_s'] / MiB:.1f} MiB/s to disk")
        finally:
            t0 = time.monotonic()
            self.stop_daemon(p)
            data["sigterm_stop_s"] = time.monotonic() - t0
            self.clean_out()

    def aria2_scale(self, listfile, n):
        """Time until aria2c has every URL queued (via its JSON-RPC on 127.0.0.1) and its RSS then."""
        d = self.fresh_dir("S4-aria2")
        port = free_port()
        argv = ["aria2c", "-j", "1", "-i", listfile, "-d", d, "--enable-rpc", "--rpc-listen-all=false",
                f"--rpc-listen-port={port}", "--console-log-level=warn", "--summary-interval=0",
                "--auto-file-renaming=false", "--allow-overwrite=true", "--file-allocation=none"]
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pidfile = os.path.join(self.work, f"aria2c-{p.pid}.pid")
        with open(pidfile, "w") as f:
            f.write(str(p.pid))
        result = {}
        try:
            req = json.dumps({"jsonrpc": "2.0", "id": "b", "method": "aria2.getGlobalStat"}).encode()
            deadline = t0 + 300
            while time.monotonic() < deadline:
                if p.poll() is not None:
                    raise RuntimeError(f"aria2c exited with {p.returncode}")
                try:
                    with urllib.request.urlopen(urllib.request.Request(
                            f"http://127.0.0.1:{port}/jsonrpc", data=req,
                            headers={"Content-Type": "application/json"}), timeout=5) as r:
                        st = json.loads(r.read())["result"]
                    queued = int(st["numWaiting"]) + int(st["numActive"]) + int(st["numStopped"])
                    if queued >= n:
                        result["accept_s"] = time.monotonic() - t0
                        break
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.05)
            else:
                raise RuntimeError("aria2c did not report all URLs queued within 300 s")
            time.sleep(1)
            result["rss_kib"] = proc_status_kib(p.pid, "VmRSS")
            result["hwm_kib"] = proc_status_kib(p.pid, "VmHWM")
            log(f"S4 aria2c: {n} URLs queued in {fmt(result['accept_s'], 3)} s, RSS {result['rss_kib']} KiB")
        finally:
            p.kill()
            p.wait()
            os.unlink(pidfile)
        return result

    # ----------------------------------------------------------------- report
    def header(self):
        """Title and environment: printed first, before any scenario runs."""
        cmd = "tools/bench/run.sh" + "".join(" " + a for a in self.args.passed)
        L = ["# fetchq benchmarks", "", f"Command: `{cmd}`", "", "## Environment", ""]
        for k, v in self.env.items():
            L.append(f"- {k}: {v}")
        return "\n".join(L)

    def load_line(self, scen):
        if scen not in self.load:
            return ""
        load, busy = self.load[scen]
        b = f"{busy * 100:.0f}%" if busy is not None else "?"
        return (f"Load average when {scen} started: {' '.join(f'{x:.2f}' for x in load)}; all CPUs busy "
                f"{b} of the time during {scen} (this benchmark's processes and everything else).")

    def report(self, total_s):
        c = self.cfg
        L = []
        mode = "quick (--quick: small sizes, 1 run each; not for comparing numbers)" if self.args.quick \
            else f"full ({c['runs']} runs each, median)"
        L.append(f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        L.append("")
        L.append(f"Mode: {mode}. Total time of this run: {total_s / 60:.1f} min.")
        L.append("")
        L.append("Ratios are fetchq ÷ tool on the throughput (files/s or MB/s): above 1 means fetchq is faster. "
                 "For S6 the ratio is on the waste (lower is better). MB = 10^6 bytes. "
                 "CPU s is user+sys of the client processes (and of fetchqd where it runs).")
        L.append("")

        for scen, title in (("S1", "S1: many small files"), ("S2", "S2: many 1 MiB files")):
            if scen not in self.results:
                continue
            data = self.results[scen]
            L.append(f"## {title} ({data['count']} files of {data['size'] // KiB} KiB)")
            L.append("")
            L.append("| -j | tool | median s | files/s | MB/s | CPU s | fetchq get ÷ tool | fetchqd ÷ tool | runs ok |")
            L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for par, runs in data["groups"].items():
                med = {}
                for tool, rs in runs.items():
                    med[tool] = median_or_none([r.extra.get("files_per_s") for r in rs if r.ok])
                for tool, rs in runs.items():
                    ok = [r for r in rs if r.ok]
                    fps = med[tool]
                    wall = median_or_none([r.wall for r in ok])
                    cpu = median_or_none([r.cpu for r in ok])
                    mbs = fps * data["size"] / 1e6 if fps else None
                    r1 = ratio(med["fetchq get"], fps) if not tool.startswith("fetchq") else None
                    r2 = ratio(med["fetchqd add+wait"], fps) if not tool.startswith("fetchq") else None
                    L.append(f"| {par} | {tool} | {fmt(wall, 3)} | {fmt(fps, 1) if fps else 'FAIL'} | {fmt(mbs)} | "
                             f"{fmt(cpu, 3)} | {fmt(r1)} | {fmt(r2)} | {len(ok)}/{len(rs)} |")
            L.append("")
            L.append(self.load_line(scen))
            L.append("")

        if "S3" in self.results:
            data = self.results["S3"]
            size = data["size"]
            L.append(f"## S3: one big file ({size / MiB:,.0f} MiB), and S7: CPU per GiB")
            L.append("")
            L.append("| tool | median s | MB/s | CPU s | CPU s/GiB | fetchq ÷ tool | runs ok |")
            L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            med = {t: median_or_none([r.extra.get("mb_per_s") for r in rs if r.ok]) for t, rs in data["runs"].items()}
            cpg = {t: median_or_none([r.extra.get("cpu_per_gib") for r in rs if r.ok]) for t, rs in data["runs"].items()}
            for tool, rs in data["runs"].items():
                ok = [r for r in rs if r.ok]
                L.append(f"| {tool} | {fmt(median_or_none([r.wall for r in ok]), 3)} | "
                         f"{fmt(med[tool], 1) if med[tool] else 'FAIL'} | {fmt(median_or_none([r.cpu for r in ok]), 3)} | "
                         f"{fmt(cpg[tool], 3)} | "
                         f"{fmt(ratio(med['fetchq get'], med[tool])) if tool != 'fetchq get' else '—'} | "
                         f"{len(ok)}/{len(rs)} |")
            L.append("")
            a, b = cpg.get("fetchq get"), cpg.get("curl")
            L.append(f"S7: fetchq uses {fmt(a, 3)} CPU s per GiB, curl {fmt(b, 3)}: "
                     f"fetchq ÷ curl = {fmt(ratio(a, b))} (lower is better).")
            L.append("")
            L.append(self.load_line("S3"))
            L.append("")

        if "S6" in self.results:
            data = self.results["S6"]
            L.append(f"## S6: bytes sent again after `kill -9` at half ({data['size'] / MiB:,.0f} MiB at "
                     f"{data['rate_mib_s']} MiB/s)")
            L.append("")
            L.append("| tool | killed at MiB | resumed from MiB | nginx sent MiB | sent ÷ size | rerun s | "
                     "fetchq ÷ tool | runs ok |")
            L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            med = {t: median_or_none([r.extra.get("waste") for r in rs if r.ok]) for t, rs in data["runs"].items()}
            for tool, rs in data["runs"].items():
                ok = [r for r in rs if r.ok]
                L.append(f"| {tool} | {fmt(median_or_none([r.extra.get('killed_at_mib') for r in ok]), 1)} | "
                         f"{fmt(median_or_none([r.extra.get('resumed_from_mib') for r in ok]), 1)} | "
                         f"{fmt(median_or_none([r.extra.get('bytes_sent', 0) / MiB for r in ok]), 1)} | "
                         f"{fmt(med[tool], 3) if med[tool] else 'FAIL'} | "
                         f"{fmt(median_or_none([r.extra.get('rerun_s') for r in ok]), 2)} | "
                         f"{fmt(ratio(med['fetchq get'], med[tool]), 3) if tool != 'fetchq get' else '—'} | "
                         f"{len(ok)}/{len(rs)} |")
            L.append("")
            L.append("sent ÷ size is every byte nginx sent for the file (`$bytes_sent`, both runs, headers "
                     "included) over its size: 1.00 means nothing was sent twice. \"killed at\" is the file's "
                     "size (fetchq: the bytes its state file records; a segmented .part is preallocated) right after `kill -9`; \"resumed from\" is the start of the "
                     "rerun's `Range` (0: no Range, started over). aria2c runs with "
                     "`--file-allocation=none` here so its file grows as it downloads.")
            L.append("")
            L.append(self.load_line("S6"))
            L.append("")

        if "S8" in self.results:
            data = self.results["S8"]
            size, cap = data["size"], data["rate_mib_s"]
            L.append(f"## S8: one big file ({size / MiB:,.0f} MiB) from a server that caps each connection "
                     f"at {cap} MiB/s")
            L.append("")
            fqs = ["fetchq get"] + (["fetchq get --connections 16"] if data["connections_option"] else []) + \
                ["fetchqd add+wait"]
            L.append("| tool | median s | MB/s | CPU s | connections (requests) | "
                     + " | ".join(f"{fq.replace(' add+wait', '')} ÷ tool" for fq in fqs) + " | runs ok |")
            L.append("| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in fqs) + " | ---: |")
            med = {t: median_or_none([r.extra.get("mb_per_s") for r in rs if r.ok]) for t, rs in data["runs"].items()}
            for tool, rs in data["runs"].items():
                ok = [r for r in rs if r.ok]
                conns = median_or_none([r.extra.get("connections") for r in ok])
                reqs = median_or_none([r.extra.get("requests") for r in ok])
                cols = []
                for fq in fqs:
                    cols.append(fmt(ratio(med.get(fq), med[tool])) if not tool.startswith("fetchq") else "—")
                L.append(f"| {tool} | {fmt(median_or_none([r.wall for r in ok]), 3)} | "
                         f"{fmt(med[tool], 1) if med[tool] else 'FAIL'} | {fmt(median_or_none([r.cpu for r in ok]), 3)} | "
                         f"{fmt(conns, 0)} ({fmt(reqs, 0)}) | {' | '.join(cols)} | {len(ok)}/{len(rs)} |")
            L.append("")
            one = size / (cap * MiB)
            L.append(f"At {cap} MiB/s per connection one connection needs {one:.1f} s ({cap * MiB / 1e6:.1f} MB/s); "
                     f"4 connections {one / 4:.1f} s, 16 connections {one / 16:.1f} s, if the client and the "
                     "machine keep up. Connections and requests are what nginx logged for the file (medians). "
                     f"curl ran {'once' if data['curl_runs'] == 1 else str(data['curl_runs']) + ' times'}: "
                     "its one connection takes the same time whatever the load. Every file is checked by sha256.")
            if not data["connections_option"]:
                L.append("")
                L.append("The `fetchq get --connections 16` and `--connections 4` rows were skipped: "
                         "`fetchq get --help` of these binaries has no `--connections` (no segmented downloads); "
                         "`fetchq get` and `fetchqd add+wait` then use one connection.")
            L.append("")
            L.append(self.load_line("S8"))
            L.append("")

        if "S9" in self.results:
            data = self.results["S9"]
            size = data["size"]
            L.append(f"## S9: one big file ({size / MiB:,.0f} MiB), no cap per connection: the link is the "
                     "bottleneck")
            L.append("")
            L.append(f"Link: {data['link']}.")
            L.append("")
            fqs = [t for t in ("fetchq get --connections 1", "fetchq get", "fetchq get --connections 16")
                   if t in data["runs"]]
            L.append("| tool | median s | MB/s | CPU s | connections (requests) | drops at link | "
                     + " | ".join(f"{fq} ÷ tool" for fq in fqs) + " | runs ok |")
            L.append("| --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in fqs) + " | ---: |")
            med = {t: median_or_none([r.extra.get("mb_per_s") for r in rs if r.ok]) for t, rs in data["runs"].items()}
            for tool, rs in data["runs"].items():
                ok = [r for r in rs if r.ok]
                conns = median_or_none([r.extra.get("connections") for r in ok])
                reqs = median_or_none([r.extra.get("requests") for r in ok])
                cols = [fmt(ratio(med.get(fq), med[tool])) if not tool.startswith("fetchq") else "—" for fq in fqs]
                drops = median_or_none([r.extra.get("drops") for r in ok])
                L.append(f"| {tool} | {fmt(median_or_none([r.wall for r in ok]), 3)} | "
                         f"{fmt(med[tool], 1) if med[tool] else 'FAIL'} | {fmt(median_or_none([r.cpu for r in ok]), 3)} | "
                         f"{fmt(conns, 0)} ({fmt(reqs, 0)}) | {fmt(drops, 0)} | {' | '.join(cols)} | "
                         f"{len(ok)}/{len(rs)} |")
            L.append("")
            single = med.get("fetchq get --connections 1")
            if data["connections_option"]:
                for seg in ("fetchq get", "fetchq get --connections 16"):
                    x = ratio(med.get(seg), single)
                    verdict = "—" if x is None else ("met" if x >= 0.95 else "NOT met")
                    what = " (default connections)" if seg == "fetchq get" else ""
                    L.append(f"- segmented ÷ single-connection fetchq: {fmt(x)} (target ≥ 0.95): "
                             f"`{seg}`{what} ÷ `fetchq get --connections 1`, MB/s medians; {verdict}")
            else:
                L.append("- segmented ÷ single-connection fetchq: — (target ≥ 0.95): `fetchq get --help` of these "
                         "binaries has no `--connections`, so there is no segmented fetchq to compare")
            if data.get("ceiling_b_s"):
                L.append(f"- the link's rate is {data['ceiling_b_s'] / 1e6:.1f} MB/s with headers; "
                         f"single-connection fetchq reached {fmt(single and single * 1e6 / data['ceiling_b_s'])} "
                         "of it")
            L.append("")
            L.append("With no cap per connection more connections cannot go faster than the link; they only add "
                     "requests, and a segmented client must not lose much to them. Connections and requests are "
                     "what nginx logged for the file (medians); drops at link are the packets the tbf qdisc dropped "
                     "during the run (`tc -s qdisc`, median; — when unshaped), each a TCP retransmission. "
                     "Every file is checked by sha256.")
            L.append("")
            L.append(self.load_line("S9"))
            L.append("")

        if "RL" in self.results:
            data = self.results["RL"]
            L.append(f"## RL: rate limit accuracy (`fetchq get --limit-rate {data['rate'] // MiB}M`, "
                     f"{data['size'] / MiB:,.0f} MiB in all)")
            L.append("")
            L.append("| case | median s | measured/limit (median) | worst | runs ok |")
            L.append("| --- | ---: | ---: | ---: | ---: |")
            for label, rs in data["runs"].items():
                ok = [r for r in rs if r.ok]
                ratios = [r.extra.get("ratio") for r in ok if r.extra.get("ratio")]
                worst = max(ratios, key=lambda x: abs(x - 1)) if ratios else None
                L.append(f"| {label} | {fmt(median_or_none([r.wall for r in ok]), 3)} | "
                         f"{fmt(median_or_none(ratios), 4)} | {fmt(worst, 4)} | {len(ok)}/{len(rs)} |")
            L.append("")
            L.append("Measured: the bytes written over the wall time of the whole `fetchq get` run (start-up "
                     "and the final rename included), divided by the limit.")
            L.append("")
            L.append(self.load_line("RL"))
            L.append("")

        if "S4" in self.results:
            data = self.results["S4"]
            n = data["count"]
            L.append(f"## S4: queue scale ({n:,} URLs in one `fetchq add -i`, fetchqd --max-parallel 1, "
                     "nothing finishes)")
            L.append("")
            L.append("| measure | value |")
            L.append("| --- | ---: |")

            def row(k, v):
                L.append(f"| {k} | {v} |")

            acc = data.get("accept_s")
            row("`fetchq add -i` (all jobs accepted), s", fmt(acc, 3))
            row("jobs accepted per second", fmt(n / acc, 0) if acc else "—")
            row("CPU s (client + fetchqd) while adding", fmt(data.get("accept_cpu_s"), 3))
            row("`fetchq show ID`, s", fmt(data.get("show_s"), 3))
            row("`fetchq show ID --json`, s", fmt(data.get("show_json_s"), 3))
            row("`fetchq list --status running --json`, s", fmt(data.get("list_running_s"), 3))
            row("`fetchq list --status running --db DB`, s", fmt(data.get("list_db_running_s"), 3))
            row("`fetchq stats --json`, s", fmt(data.get("stats_s"), 3))
            row(f"`fetchq list --status waiting --json` ({data.get('list_waiting_count', '?')} jobs), s",
                fmt(data.get("list_waiting_s"), 3))

            def mib(kib):
                return fmt(kib / 1024, 1) if kib else "—"

            row("fetchqd VmRSS before / after adding, MiB", f"{mib(data.get('rss_before_kib'))} / "
                                                             f"{mib(data.get('rss_after_kib'))}")
            row("fetchqd VmRSS at the end / VmHWM, MiB", f"{mib(data.get('rss_end_kib'))} / {mib(data.get('hwm_kib'))}")
            db = data.get("db_bytes")
            row("database (with -wal, -shm), MiB", fmt(db / MiB, 1) if db else "—")
            row("database bytes per job", fmt(db / n, 0) if db else "—")
            row("fetchqd stop after SIGTERM, s", fmt(data.get("sigterm_stop_s"), 2))
            a2 = data.get("aria2") or {}
            if a2:
                row("aria2c -j 1 -i (same list): all URLs queued (RPC), s", fmt(a2.get("accept_s"), 3))
                row("aria2c VmRSS / VmHWM then, MiB", f"{mib(a2.get('rss_kib'))} / {mib(a2.get('hwm_kib'))}")
                row("fetchq ÷ aria2c, time to accept", fmt(ratio(acc, a2.get("accept_s"))))
            L.append("")
            L.append(self.load_line("S4"))
            L.append("")

        data = self.results.get("S5")
        if data:
            n = data["count"]
            L.append(f"## S5: {n:,} transfers at once (each throttled to {data['rate_kb']} KiB/s by nginx, "
                     f"fetchqd --max-parallel {n}, measured over {data['window_s']} s)")
            L.append("")
            L.append("| measure | value | target |")
            L.append("| --- | ---: | --- |")
            L.append(f"| transfers running (start / end of the window) | {data.get('running_at_start', '—')} / "
                     f"{data.get('running_at_end', '—')} | {n} |")
            L.append(f"| seconds until all were running | {fmt(data.get('ramp_s'), 1)} | |")
            L.append(f"| fetchqd threads (most seen) | {data.get('threads_max', '—')} | at most 16 |")
            rss = data.get("rss_max_kib")
            hwm = data.get("hwm_kib")
            L.append(f"| fetchqd VmRSS (most seen) / VmHWM, MiB | {fmt(rss / 1024, 1) if rss else '—'} / "
                     f"{fmt(hwm / 1024, 1) if hwm else '—'} | under 128 |")
            share = data.get("cpu_share")
            L.append(f"| fetchqd CPU, share of one core | {fmt(share * 100, 1) + ' %' if share is not None else '—'} | |")
            bps, exp = data.get("bytes_per_s"), data.get("expected_bytes_per_s")
            L.append(f"| written to disk, MiB/s (nginx allows {fmt(exp / MiB, 1) if exp else '—'}) | "
                     f"{fmt(bps / MiB, 2) if bps is not None else '—'} | |")
            L.append(f"| fetchqd stop after SIGTERM with all running, s | {fmt(data.get('sigterm_stop_s'), 2)} | "
                     "under 2 |")
            L.append("")
            L.append(self.load_line("S5"))
            L.append("")

        L.append("## Notes")
        L.append("")
        L.append("- The page cache is not dropped between runs (that needs `echo 3 > /proc/sys/vm/drop_caches` as "
                 "root and disturbs everything else on the machine): nginx serves the test files from memory, so "
                 "these numbers measure the clients, not the source disk. Before each run `sync` flushes earlier "
                 "runs' writes.")
        L.append("- fetchq makes every file durable (`fdatasync` at checkpoints; before the rename an `fsync`, or "
                 "for files finishing together one `syncfs` and an `fdatasync` each; an `fsync` of the folder); "
                 "aria2c fsyncs its files too; curl and wget2 leave the data in the page cache. `curl + sync` in S3 adds "
                 "`sync FILE` to curl's time, for a like-for-like figure; `dd ... conv=fsync` is the disk ceiling.")
        L.append("- For `fetchqd add+wait` the daemon is started (fresh database) before the clock starts and "
                 "stopped after it stops; its CPU time is read from /proc.")
        L.append("- Every fetchq run is checked afterwards, outside the timing: every file's sha256 against the "
                 "source. The other tools' files are checked for count and size (S6, S8, S9: sha256 for every tool).")
        L.append("- Everything runs on one machine over loopback: nginx (one worker) and the client share the "
                 "CPUs, so other processes (see the load lines) move the numbers, CPU seconds included.")
        L.append("- `dd ... conv=fsync` writes everything, then flushes once; a client that flushes as it goes "
                 "(fetchq checkpoints) can finish sooner than this \"ceiling\".")
        for n_ in self.notes:
            L.append(f"- {n_}")
        L.append("")
        L.append("## Failures")
        L.append("")
        if self.failures:
            for f_ in self.failures:
                L.append(f"- {f_}")
        else:
            L.append("None.")
        L.append("")
        return "\n".join(L)

    def to_json(self, total_s):
        def conv(v):
            if isinstance(v, Run):
                return v.as_dict()
            if isinstance(v, dict):
                return {str(k): conv(x) for k, x in v.items()}
            if isinstance(v, list):
                return [conv(x) for x in v]
            return v
        return {"env": self.env, "config": self.cfg, "results": conv(self.results), "failures": self.failures,
                "notes": self.notes, "total_s": total_s}

    # ------------------------------------------------------------------- main
    def main(self):
        only = [s.strip().upper() for s in self.args.only.split(",")] if self.args.only else SCENARIOS
        for s in only:
            if s not in SCENARIOS:
                raise SystemExit(f"bench: unknown scenario {s} (known: {', '.join(SCENARIOS)})")
        self.only = only
        for b in (self.fetchq, self.fetchqd):
            if not os.access(b, os.X_OK):
                raise SystemExit(f"bench: {b} is missing; build fetchq first (tools/bench/run.sh does)")
        for t in ("curl", "aria2c", "wget2", "dd", "sync"):
            if not shutil.which(t):
                raise SystemExit(f"bench: {t} is not installed")
        os.makedirs(self.work, exist_ok=True)
        t_start = time.monotonic()
        self.environment()
        head = self.header()
        print(head, flush=True)
        self.check_disk()
        self.make_data()
        try:
            self.start_nginx()
            steps = {"S1": lambda: self.many_files("S1"), "S2": lambda: self.many_files("S2"),
                     "S3": self.big_file, "S6": self.crash_waste, "S8": self.capped, "S9": self.link_capped,
                     "S4": self.queue_scale,
                     "S5": self.many_at_once, "RL": self.rate_limit}
            for s in SCENARIOS:
                if s in only:
                    log(f"--- {s}")
                    load, cpu0 = os.getloadavg(), cpu_ticks()
                    steps[s]()
                    cpu1 = cpu_ticks()
                    total = sum(cpu1) - sum(cpu0)
                    busy = 1 - ((cpu1[3] + cpu1[4]) - (cpu0[3] + cpu0[4])) / total if total > 0 else None
                    self.load[s] = (load, busy)
        finally:
            for p, pidfile in list(self.daemons):
                self.stop_daemon(p)
            self.unshape_link()
            self.stop_nginx()
        total = time.monotonic() - t_start
        text = self.report(total)
        print(text, flush=True)
        if self.args.markdown_out:
            with open(self.args.markdown_out, "w") as f:
                f.write(head + "\n" + text)
        if self.args.json_out:
            with open(self.args.json_out, "w") as f:
                json.dump(self.to_json(total), f, indent=1, default=str)
        log(f"done in {total / 60:.1f} min")
        return 1 if self.failures else 0


def main():
    ap = argparse.ArgumentParser(description="fetchq benchmarks against curl, wget2 and aria2c over loopback")
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 run each (CI smoke run, < 2 min)")
    ap.add_argument("--runs", type=int, default=0, help="runs per tool (default 3, quick 1)")
    ap.add_argument("--s8-mib", type=int, default=0,
                    help="S8's file size in MiB (default 128; the issue's second size is 1024)")
    ap.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--bin-dir", required=True, help="folder with the fetchq and fetchqd binaries")
    ap.add_argument("--workdir", required=True, help="scratch folder (data, nginx, downloads)")
    ap.add_argument("--markdown-out", default="", help="also write the Markdown report here")
    ap.add_argument("--json-out", default="", help="also write every run's numbers as JSON here")
    args = ap.parse_args()
    args.passed, skip = [], False
    for a in sys.argv[1:]:   # the options the user gave run.sh, for the report's command line
        if skip:
            skip = False
        elif a in ("--bin-dir", "--workdir"):
            skip = True
        elif not a.startswith(("--bin-dir=", "--workdir=")):
            args.passed.append(a)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    sys.exit(Bench(args).main())


if __name__ == "__main__":
    main()
