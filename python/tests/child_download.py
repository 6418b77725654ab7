# A program for test_process.py: downloads URL into DEST with its state in STATE.
#
#   python3 child_download.py URL STATE DEST join   prints "started", then join()s; on Ctrl-C
#                                                   prints "interrupted", stops and exits 3
#   python3 child_download.py URL STATE DEST poll   prints "bytes N" now and then, for ever
import sys
import time

from fetchq import DownloadQueueService

url, state, dest, mode = sys.argv[1:5]
queue = DownloadQueueService(state=state, progress_interval=0.05)
job = queue.download(url, dest, on_start=lambda j: print("started", flush=True))
if mode == "join":
    try:
        queue.join()
        print("joined", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        queue.stop()
        sys.exit(3)
else:
    while True:
        print("bytes", queue.id_to_job(job.id).bytes, flush=True)
        time.sleep(0.05)
