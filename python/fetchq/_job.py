"""DownloadJob, its status and the exceptions of the fetchq package."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Mapping, Optional


class DownloadJobStatus(str, Enum):
    """Where a job is in its life. fetchq adds PAUSED (a user paused it) to the seed's states."""

    WAITING = "waiting"  # queued, not yet running
    RUNNING = "running"  # being downloaded
    PAUSED = "paused"  # stopped by pause_job(), bytes kept; resume_job() queues it again
    COMPLETED = "completed"  # the file is in place
    CANCELLED = "cancelled"  # cancelled by the user
    ERROR = "error"  # failed for good; retry_job() queues it again

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset({DownloadJobStatus.COMPLETED, DownloadJobStatus.CANCELLED, DownloadJobStatus.ERROR})


class FetchqError(Exception):
    """A request the queue refused or could not carry out. ``code`` names the reason
    ("invalid_argument", "wrong_state", "busy", "storage", ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidDownloadRequest(FetchqError, ValueError):
    """download() was given a URL or destination the queue does not take."""


class UnknownJobIDException(FetchqError, LookupError):
    """No job has this id (it never existed, or it was pruned)."""

    def __init__(self, message: str) -> None:
        super().__init__("not_found", message)


class ServiceInactiveException(FetchqError):
    """The service was stopped: start() it again first."""

    def __init__(self, message: str = "the download queue is stopped") -> None:
        super().__init__("wrong_state", message)


class DownloadJobCancelledException(Exception):
    """Kept so that code written for the seed's API can import it; fetchq reports a cancelled
    job by its status (CANCELLED) and the on_cancelled callback instead."""


class DownloadError(Exception):
    """What a two-argument ``on_error(job, exception)`` callback receives: the job's error_type
    and error as an exception."""

    def __init__(self, error_type: Optional[str], error: Optional[str]) -> None:
        super().__init__(error_type or "error", error)
        self.error_type = error_type
        self.error = error


# The seed's JSON shape, in its order. The access token is never part of it.
_DUMP_FIELDS = (
    "source",
    "dest",
    "id",
    "priority",
    "status",
    "download_path",
    "job_started",
    "job_ended",
    "bytes",
    "total_bytes",
    "error_type",
    "error",
)


@dataclass
class DownloadJob:
    """One download: where from, where to, and how far it got.

    The service hands out one object per job and keeps it up to date as events arrive, so a job
    returned by ``download()`` shows its final state after ``join()``. Times are ISO 8601 UTC
    strings as fetchq stores them. The access token is not kept here.
    """

    source: str
    dest: Path
    id: int = -1
    priority: int = 10
    status: DownloadJobStatus = DownloadJobStatus.WAITING
    download_path: Optional[Path] = None
    job_started: Optional[str] = None
    job_ended: Optional[str] = None
    bytes: int = 0
    total_bytes: int = 0
    error_type: Optional[str] = None
    error: Optional[str] = None
    cancelled: bool = False
    attempts: int = field(default=0, repr=False, compare=False)

    def __hash__(self) -> int:
        return hash(self.id)

    @classmethod
    def _from_snapshot(cls, snap: Mapping[str, Any]) -> "DownloadJob":
        job = cls(source=snap["source"], dest=Path(snap["dest"]))
        job._update(snap)
        return job

    def _update(self, snap: Mapping[str, Any]) -> None:
        self.source = snap["source"]
        self.dest = Path(snap["dest"])
        self.id = int(snap["id"])
        self.priority = int(snap["priority"])
        self.status = DownloadJobStatus(snap["status"])
        path = snap.get("download_path")
        self.download_path = Path(path) if path else None
        self.job_started = snap.get("job_started")
        self.job_ended = snap.get("job_ended")
        self.bytes = int(snap["bytes"])
        self.total_bytes = int(snap["total_bytes"])
        self.error_type = snap.get("error_type")
        self.error = snap.get("error")
        self.cancelled = bool(snap.get("cancelled", False))
        self.attempts = int(snap.get("attempts", 0))

    @property
    def complete(self) -> bool:
        """True once the file is in place."""
        return self.status == DownloadJobStatus.COMPLETED

    @property
    def waiting(self) -> bool:
        return self.status == DownloadJobStatus.WAITING

    @property
    def running(self) -> bool:
        return self.status == DownloadJobStatus.RUNNING

    @property
    def paused(self) -> bool:
        return self.status == DownloadJobStatus.PAUSED

    @property
    def errored(self) -> bool:
        return self.status == DownloadJobStatus.ERROR

    @property
    def in_terminal_state(self) -> bool:
        """True when nothing more happens to the job unless it is retried."""
        return self.status in _TERMINAL

    def model_dump(self, *, exclude_none: bool = False, mode: str = "python") -> Dict[str, Any]:
        """The job as a dict with the seed's keys. ``mode="json"`` gives strings for paths and
        the status; ``mode="python"`` gives Path and DownloadJobStatus values."""
        out: Dict[str, Any] = {}
        for name in _DUMP_FIELDS:
            value = getattr(self, name)
            if value is None and exclude_none:
                continue
            if mode == "json":
                if isinstance(value, Path):
                    value = os.fspath(value)
                elif isinstance(value, DownloadJobStatus):
                    value = value.value
            out[name] = value
        return out

    def model_dump_json(self, *, exclude_none: bool = False, indent: Optional[int] = None) -> str:
        """The job as the seed's JSON text (compact unless ``indent`` is given)."""
        data = self.model_dump(exclude_none=exclude_none, mode="json")
        if indent is None:
            return json.dumps(data, separators=(",", ":"))
        return json.dumps(data, indent=indent)
