"""The API's janitor on the real service: when a job expires (VIDPOSE_JOB_TTL_S after it finished), its
upload and its rendered overlay are deleted, and it leaves the job list."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TTL_S = 4


def test_files_of_an_expired_job_are_gone(make_stack, shared_data):
    stack = make_stack(workers=1, VIDPOSE_JOB_TTL_S=TTL_S)
    clip = shared_data / "videos" / "street_walk.mp4"
    job_id = stack.submit(clip, {"detector": "full-frame", "max_frames": 3})
    assert stack.wait(job_id)["status"] == "succeeded"
    overlay = stack.client.get(f"/jobs/{job_id}/overlay.mp4", timeout=60)
    assert overlay.status_code == 200
    blob = Path(stack.queue().get_job(job_id)["blob"])
    rendered = stack.workdir / "blobs" / "overlays" / f"{job_id}.mp4"
    assert blob.is_file() and rendered.is_file()
    assert job_id in [j["job_id"] for j in stack.client.get("/jobs").json()["jobs"]]

    deadline = time.monotonic() + TTL_S + 30  # expiry, then a sweep (every second at this TTL)
    while blob.exists() or rendered.exists():
        assert time.monotonic() < deadline, (blob.exists(), rendered.exists(), stack.log("api")[-2000:])
        time.sleep(0.25)
    assert stack.client.get(f"/jobs/{job_id}").status_code == 404  # it had expired
    assert job_id not in [j["job_id"] for j in stack.client.get("/jobs").json()["jobs"]]
    assert "janitor: deleted" in stack.log("api")
