"""TqdmProgress: a console progress bar per job, as an on_progress callback."""

from __future__ import annotations

import threading
from typing import Any, Dict

from ._job import DownloadJob


class TqdmProgress:
    """Shows one tqdm bar per job: ``download(..., on_progress=TqdmProgress().update)``.

    A bar opens at a job's first progress, follows its bytes and closes when they reach the
    total. Needs the tqdm package (Debian: python3-tqdm). Callbacks all run on the service's
    callback thread; the lock is for callers who share one instance across services.
    """

    def __init__(self, **tqdm_options: Any) -> None:
        from tqdm import tqdm  # imported here: the rest of fetchq does not need tqdm

        self._tqdm = tqdm
        self._options = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, **tqdm_options}
        self._bars: Dict[int, Any] = {}
        self._lock = threading.Lock()

    def update(self, job: DownloadJob) -> None:
        """Moves the job's bar to job.bytes (opening it first when needed)."""
        with self._lock:
            bar = self._bars.get(job.id)
            if bar is None:
                name = job.download_path.name if job.download_path else job.source
                bar = self._tqdm(desc=name, total=job.total_bytes or None, **self._options)
                self._bars[job.id] = bar
            if job.total_bytes and bar.total != job.total_bytes:
                bar.total = job.total_bytes
            if job.bytes > bar.n:
                bar.update(job.bytes - bar.n)
            if job.total_bytes and job.bytes >= job.total_bytes:
                bar.close()
                del self._bars[job.id]
