"""GET /jobs/{id}/overlay.mp4 over real HTTP (uvicorn + real Redis; SimulatedWorker writes the poses):
H.264 with the clip's frame count, rendered once, Range requests, the same 404/409/401 as /result."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import av
import cv2
import numpy as np
import pytest

from service.api import overlay

BOX = [300.0, 100.0, 200.0, 380.0]
OPTIONS = {"boxes": {str(i): [{"bbox": BOX, "track_id": 5}] for i in (1, 2, 3)}}  # no people in 0 and 4


def submit(client, clip, options=None):
    with open(clip, "rb") as f:
        data = {"options": json.dumps(options)} if options is not None else None
        r = client.post("/estimate", files={"video": (clip.name, f, "video/mp4")}, data=data)
    assert r.status_code == 202, r.text
    return r


def wait_for(client, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def source_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    return frames


def decode(data: bytes, tmp_path) -> tuple[str, list[np.ndarray]]:
    path = tmp_path / f"dl-{time.monotonic_ns()}.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        return c.streams.video[0].codec_context.name, frames


@pytest.fixture()
def counted_renders(monkeypatch):
    """Wraps the real render to count calls and the most that ran at once."""
    stats = {"calls": 0, "running": 0, "max_running": 0}
    lock = threading.Lock()
    real = overlay._render

    def counting(*args):
        with lock:
            stats["calls"] += 1
            stats["running"] += 1
            stats["max_running"] = max(stats["max_running"], stats["running"])
        try:
            time.sleep(0.2)  # widen the window in which concurrent requests overlap
            return real(*args)
        finally:
            with lock:
                stats["running"] -= 1

    monkeypatch.setattr(overlay, "_render", counting)
    return stats


def renders_ok(client) -> float:
    """vidpose_overlay_renders_total{outcome="ok"} on the API's /metrics (0 before the first render)."""
    m = re.search(r'^vidpose_overlay_renders_total\{outcome="ok"\} (\S+)$', client.get("/metrics").text, re.M)
    return float(m.group(1)) if m else 0.0


def test_overlay_video_of_a_finished_job(api, simulated_worker, clips, tmp_path, counted_renders):
    simulated_worker(api)
    with api.client() as c:
        renders_before = renders_ok(c)
        job_id = submit(c, clips["street"], OPTIONS).json()["job_id"]
        assert wait_for(c, job_id)["status"] == "succeeded"
        r = c.get(f"/jobs/{job_id}/overlay.mp4")
        assert r.status_code == 200, r.text
        assert renders_ok(c) == renders_before + 1
        assert r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
        codec, frames = decode(r.content, tmp_path)
        source = source_frames(clips["street"])
        assert codec == "h264" and len(frames) == len(source) == 5
        x, y, w, h = (int(v) for v in BOX)
        region = (slice(y, y + h), slice(x, x + w))
        diff = [float(np.abs(f[region].astype(int) - s[region].astype(int)).mean())
                for f, s in zip(frames, source)]
        assert diff[0] < 4 and diff[4] < 4  # no people: the frame as it was (bar compression)
        assert min(diff[1:4]) > 2 * max(diff[0], diff[4]) and min(diff[1:4]) > 4  # skeleton drawn

        cached = api.blob_dir / "overlays" / f"{job_id}.mp4"
        assert cached.read_bytes() == r.content
        assert c.get(f"/v1/jobs/{job_id}/overlay.mp4").content == r.content  # served from the cache
        assert counted_renders["calls"] == 1
        assert not [p for p in cached.parent.iterdir() if p.name != cached.name]  # no temp files left

        # Range: what a browser sends to seek.
        size = len(r.content)
        part = c.get(f"/jobs/{job_id}/overlay.mp4", headers={"Range": "bytes=100-299"})
        assert part.status_code == 206 and part.content == r.content[100:300]
        assert part.headers["content-range"] == f"bytes 100-299/{size}"
        tail = c.get(f"/jobs/{job_id}/overlay.mp4", headers={"Range": "bytes=-50"})
        assert tail.status_code == 206 and tail.content == r.content[-50:]
        beyond = c.get(f"/jobs/{job_id}/overlay.mp4", headers={"Range": f"bytes={size + 10}-"})
        assert beyond.status_code == 416


def test_concurrent_requests_share_one_render_and_renders_are_bounded(api_factory, simulated_worker, clips,
                                                                       counted_renders):
    api = api_factory(overlay_max_renders=1)
    simulated_worker(api)
    with api.client() as c:
        jobs = [submit(c, clips[name], OPTIONS if name == "street" else None).json()["job_id"]
                for name in ("street", "soccer")]
        for job_id in jobs:
            assert wait_for(c, job_id)["status"] == "succeeded"

    def fetch(job_id: str) -> bytes:
        with api.client() as c:
            r = c.get(f"/jobs/{job_id}/overlay.mp4")
            assert r.status_code == 200, r.text
            return r.content

    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(fetch, [jobs[i % 2] for i in range(8)]))
    assert counted_renders["calls"] == 2  # one per job, however many asked at once
    assert counted_renders["max_running"] == 1  # overlay_max_renders
    assert len({bodies[i] for i in range(0, 8, 2)}) == 1 and len({bodies[i] for i in range(1, 8, 2)}) == 1


def test_overlay_refused_like_the_result(api_factory, simulated_worker, clips):
    api = api_factory(api_keys=["key-a", "key-b"])
    with api.client("key-a") as a, api.client("key-b") as b, api.client() as anonymous:
        queued = submit(a, clips["soccer"]).json()["job_id"]
        r = a.get(f"/jobs/{queued}/overlay.mp4")
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_not_finished"
        assert a.get(f"/v1/jobs/{queued}/overlay.mp4").json()["error"]["code"] == "job_not_finished"
        assert anonymous.get(f"/jobs/{queued}/overlay.mp4").status_code == 401
        assert b.get(f"/jobs/{queued}/overlay.mp4").json()["error"]["code"] == "job_not_found"  # not yours
        assert a.get("/jobs/nope/overlay.mp4").status_code == 404
        assert a.get("/jobs/" + "x" * 22 + "/overlay.mp4").json()["error"]["code"] == "job_not_found"

        simulated_worker(api, fail_with=("invalid_video", "cannot decode"))
        assert wait_for(a, queued)["status"] == "failed"
        r = a.get(f"/jobs/{queued}/overlay.mp4")
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_failed"
        assert "cannot decode" in r.json()["error"]["message"]
    assert not (api.blob_dir / "overlays").exists() or not any((api.blob_dir / "overlays").iterdir())


def test_overlay_of_a_job_whose_clip_was_deleted(api, simulated_worker, clips):
    simulated_worker(api)
    with api.client() as c:
        job_id = submit(c, clips["soccer"]).json()["job_id"]
        assert wait_for(c, job_id)["status"] == "succeeded"
        for blob in api.blobs():
            blob.unlink()
        r = c.get(f"/jobs/{job_id}/overlay.mp4")
        assert r.status_code == 410 and r.json()["error"]["code"] == "video_gone"
        assert c.get(f"/jobs/{job_id}/result").status_code == 200  # the poses are still there
