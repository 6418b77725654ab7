"""The seed's documented example program, run as a program against a local server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import payload

HERE = Path(__file__).resolve().parent


def parse_objects(text: str):
    decoder = json.JSONDecoder()
    out, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)


@pytest.mark.parametrize("mode", ["embedded", "socket"])
def test_seed_example_prints_the_seeds_json(server, downloads, mode, request):
    env = os.environ.copy()
    env.pop("FETCHQ_SOCKET", None)
    if mode == "socket":  # the example unchanged: $FETCHQ_SOCKET makes it a client of fetchqd
        env["FETCHQ_SOCKET"] = str(request.getfixturevalue("fetchqd"))
    fire = payload(666_734, 1)
    bird = payload(774_949, 2)
    model = payload(300_000, 3)
    server.add("/invokeai/assets/a-painting-of-a-fire.png", fire)
    server.add("/invokeai/assets/birdhouse.png", bird)
    server.add("/api/download/models/152309", model, filename="xl_more_art-full_v1.safetensors")
    base = server.url("")

    run = subprocess.run(
        [sys.executable, str(HERE / "seed_example.py"), base, str(downloads)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert run.returncode == 0, run.stderr
    jobs = parse_objects(run.stdout)
    assert len(jobs) == 4, run.stdout

    # The seed's keys in its order; exclude_none=True leaves out what is None.
    order = ["source", "dest", "id", "priority", "status", "download_path", "job_started", "job_ended",
             "bytes", "total_bytes", "error_type", "error"]
    for job in jobs:
        assert list(job) == [k for k in order if k in job]
        assert job["dest"] == str(downloads)
        assert job["priority"] == 10
        assert "access_token" not in job
    ids = [j["id"] for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 4

    fire_job, bird_job, missing_job, model_job = jobs
    assert fire_job["source"] == f"{base}/invokeai/assets/a-painting-of-a-fire.png?raw=true"
    for job, body, name in ((fire_job, fire, "a-painting-of-a-fire.png"), (bird_job, bird, "birdhouse.png"),
                            (model_job, model, "xl_more_art-full_v1.safetensors")):
        assert job["status"] == "completed", job
        assert job["download_path"] == str(downloads / name)
        assert job["bytes"] == job["total_bytes"] == len(body)
        assert "error_type" not in job and "error" not in job
        assert job["job_started"] and job["job_ended"]
        assert (downloads / name).read_bytes() == body

    assert missing_job["status"] == "error"
    assert "404" in missing_job["error_type"] and "Not Found" in missing_job["error_type"]
    assert missing_job["bytes"] == 0
    assert not (downloads / "missing.png").exists()
