"""fetchq: a persistent, restartable download queue, with InvokeAI's DownloadQueueService API.

    from fetchq import DownloadQueueService

    queue = DownloadQueueService(state="downloads.db")   # None: a private temporary file
    job = queue.download(source="https://example.org/model.safetensors", dest="/tmp/downloads")
    queue.join()
    print(job.model_dump_json(indent=4))

The queue runs in this process on fetchq's C++ core; its jobs live in the state file and
resume after a crash or restart.
"""

from ._fetchq import __version__, set_log_level
from ._job import (
    DownloadError,
    DownloadJob,
    DownloadJobCancelledException,
    DownloadJobStatus,
    FetchqError,
    InvalidDownloadRequest,
    ServiceInactiveException,
    UnknownJobIDException,
)
from ._progress import TqdmProgress
from ._service import DownloadQueueService

__all__ = [
    "DownloadError",
    "DownloadJob",
    "DownloadJobCancelledException",
    "DownloadJobStatus",
    "DownloadQueueService",
    "FetchqError",
    "InvalidDownloadRequest",
    "ServiceInactiveException",
    "TqdmProgress",
    "UnknownJobIDException",
    "__version__",
    "set_log_level",
]
