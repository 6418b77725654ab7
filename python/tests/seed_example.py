# InvokeAI's documented DownloadQueueService example, as it stands but for the import line and
# the URLs, which point at the test's local server (argv[1]) instead of GitHub and Civitai.
#
#   python3 seed_example.py BASE_URL DEST_FOLDER
import sys

from fetchq import DownloadQueueService, TqdmProgress

base, dest = sys.argv[1], sys.argv[2]

download_queue = DownloadQueueService()
for url in [f'{base}/invokeai/assets/a-painting-of-a-fire.png?raw=true',
            f'{base}/invokeai/assets/birdhouse.png?raw=true',
            f'{base}/invokeai/assets/missing.png',
            f'{base}/api/download/models/152309?type=Model&format=SafeTensor',
            ]:

    # urls start downloading as soon as download() is called
    download_queue.download(source=url,
                            dest=dest,
                            on_progress=TqdmProgress().update
                            )

download_queue.join()  # wait for all downloads to finish
for job in download_queue.list_jobs():
    print(job.model_dump_json(exclude_none=True, indent=4), "\n")
