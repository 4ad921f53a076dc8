"""The real service end to end: uvicorn API + 2 worker processes + redis-server, real clips, real HTTP."""

from __future__ import annotations

import math
import re
import signal
import time

import pytest

pytestmark = pytest.mark.slow

STACK_ENV = dict(VIDPOSE_WORKER_MAX_BATCH=4, VIDPOSE_WORKER_MAX_WAIT_MS=5, VIDPOSE_WORKER_HEARTBEAT_S=0.25,
                 VIDPOSE_WORKER_RECLAIM_IDLE_MS=2000, VIDPOSE_WORKER_TTL_S=3, VIDPOSE_WORKER_MAX_JOBS=2)
TWO_PEOPLE = [[10, 10, 60, 80], [80, 10, 60, 80]]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(workers=2, **STACK_ENV)


def check_result(res: dict, n: int, width: int, height: int, tracks=(0,)) -> None:
    """Every frame exactly once, in order; each person: 17 finite keypoints inside the frame
    (and, unless tracks is None, exactly these track ids in every frame)."""
    assert res["video"]["width"] == width and res["video"]["height"] == height and res["video"]["frames"] == n
    assert len(res["keypoint_names"]) == 17 and res["keypoint_names"][0] == "nose"
    assert [f["frame_index"] for f in res["frames"]] == list(range(n))
    for f in res["frames"]:
        assert math.isfinite(f["timestamp_s"])
        if tracks is not None:
            assert sorted(i["track_id"] for i in f["instances"]) == sorted(tracks)
        for inst in f["instances"]:
            assert len(inst["bbox"]) == 4 and 0.0 <= inst["score"] <= 1.0  # the contract's bounds
            assert len(inst["keypoints"]) == 17
            for x, y, s in inst["keypoints"]:
                assert math.isfinite(x) and math.isfinite(y) and 0.0 <= s <= 1.0
                assert 0 <= x <= width - 1 and 0 <= y <= height - 1


def metric(text: str, metric_name: str, required: bool = True, **labels) -> float:
    """Sum of a metric's samples whose labels include `labels` (absent and not required: 0)."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != metric_name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    assert found or not required, f"metric {metric_name}{labels} not exposed"
    return total


def test_sample_clips_end_to_end(stack, shared_data):
    street = stack.submit(shared_data / "videos" / "street_walk.mp4")  # H.264, the default detector
    soccer = stack.submit(shared_data / "videos" / "soccer.mp4", {"detector": "full-frame"})  # MPEG-4 Part 2
    for job_id in (street, soccer):
        j = stack.wait(job_id)
        assert j["status"] == "succeeded", j
        assert j["progress"] == 1.0 and j["frames_done"] == j["frames_total"] == 5
        assert j["model"]["name"] == "test-model" and j["model"]["version"] == "e2e-1"
    check_result(stack.result(soccer), 5, 1280, 720)
    street_result = stack.result(street)
    tracks = {i["track_id"] for f in street_result["frames"] for i in f["instances"]}
    assert all(len(f["instances"]) >= 2 for f in street_result["frames"]), street_result["frames"]
    check_result(street_result, 5, 960, 540, tracks=None)
    assert len(tracks) >= 2 and all(0 <= t <= 999 for t in tracks)


def test_client_boxes(stack, shared_data):
    boxes = [[{"bbox": [300, 100, 120, 300], "track_id": 4}, {"bbox": [700, 120, 110, 280], "track_id": 9}],
             [{"bbox": [305, 100, 120, 300], "track_id": 4}],
             [], [[10, 10, 50, 90]], None]
    job = stack.submit(shared_data / "videos" / "soccer.mp4", {"boxes": boxes})
    assert stack.wait(job)["status"] == "succeeded"
    res = stack.result(job)
    assert [[i["track_id"] for i in f["instances"]] for f in res["frames"]] == [[4, 9], [4], [], [0], []]
    assert res["frames"][1]["instances"][0]["bbox"] == [305.0, 100.0, 120.0, 300.0]
    for f in res["frames"]:
        for inst in f["instances"]:
            for x, y, _ in inst["keypoints"]:
                assert 0 <= x <= 1279 and 0 <= y <= 719


def test_cancel_running_job(stack, long_clip):
    job = stack.submit(long_clip, {"boxes": [TWO_PEOPLE] * 900})
    deadline = time.monotonic() + 60
    while stack.job(job)["frames_done"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    r = stack.client.delete(f"/jobs/{job}")
    assert r.status_code in (200, 202), r.text
    assert stack.wait(job)["status"] == "cancelled"
    q = stack.queue()
    time.sleep(1.0)  # the worker stops within one batch; give it time to (wrongly) continue
    done = stack.job(job)["frames_done"]
    assert 0 < done < 900
    assert q.frame_count(job) == done
    time.sleep(0.5)
    assert stack.job(job)["frames_done"] == done
    held = sum(metric(stack.worker_metrics(w), "vidpose_worker_jobs_held") for w in stack.live_workers())
    assert held == 0
    assert q.r.xlen(q.stream_key("test-model")) == 0  # the entry was acked and removed


def test_metrics_after_jobs(stack, shared_data):
    job = stack.submit(shared_data / "videos" / "street_walk.mp4")
    assert stack.wait(job)["status"] == "succeeded"
    api = stack.client.get("/metrics").text
    assert metric(api, "vidpose_http_requests_total", route="/estimate", method="POST", status="202") >= 1
    assert metric(api, "vidpose_http_request_duration_seconds_count") >= 1
    assert metric(api, "vidpose_jobs_submitted_total") >= 3
    assert metric(api, "vidpose_queue_jobs", model="test-model") == 0
    assert metric(api, "vidpose_jobs_finished_total", status="cancelled") >= 1
    texts = [stack.worker_metrics(w) for w in stack.live_workers()]
    # Labelled series appear once used, so a worker that ran no job yet lacks some: sum what exists.
    total = lambda name, **kw: sum(metric(t, name, required=False, **kw) for t in texts)
    assert total("vidpose_jobs_finished_total", status="succeeded") >= 4
    assert total("vidpose_frames_processed_total", model="test-model") >= 20
    assert total("vidpose_batch_size_count", model="test-model") >= 1
    assert 1 <= total("vidpose_batch_size_sum") / total("vidpose_batch_size_count") <= 4  # max_batch 4
    assert total("vidpose_batch_wait_seconds_count") >= 1
    assert total("vidpose_model_forward_seconds_count", stage="encode") >= 1
    assert total("vidpose_model_forward_seconds_count", stage="decode") >= 1
    assert total("vidpose_job_duration_seconds_count") >= 4
    assert total("vidpose_job_queue_wait_seconds_count") >= 4
    # street_walk ran through the default detector (nanodet when its package is there, as under CI,
    # else hog) and the tracker twice (5 frames each)
    from service import detectors
    from service.settings import Settings

    default = "nanodet" if detectors.unavailable("nanodet", Settings()) is None else "hog"
    assert total("vidpose_detect_frames_total", detector=default) >= 10
    assert total("vidpose_detect_seconds_count", detector=default) >= 2
    assert total("vidpose_people_detected_total", detector=default) >= 20
    assert total("vidpose_tracks_started_total") >= 4
    for t in texts:
        assert metric(t, "vidpose_model_info", name="test-model", version="e2e-1", device="cpu") == 1
        assert metric(t, "vidpose_worker_up") == 1
        assert metric(t, "vidpose_worker_last_heartbeat_timestamp_seconds") > time.time() - 30


def _holder(stack, job_id: str, timeout: float = 60) -> str:
    """The worker id running the job, once it has written some frames."""
    q = stack.queue()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = q.get_job(job_id)
        if j["status"] == "running" and j["frames_done"] > 0 and j["worker"]:
            return j["worker"]
        time.sleep(0.02)
    raise AssertionError(f"job never ran: {q.get_job(job_id)}")


def test_kill9_worker_mid_job(stack, long_clip):
    stack.ensure_workers(2)
    job = stack.submit(long_clip, {"boxes": [TWO_PEOPLE] * 900})
    victim = _holder(stack, job)
    stack.workers[victim][0].kill()  # SIGKILL: no drain, no ack, no deregister
    stack.workers[victim][0].wait()
    j = stack.wait(job, timeout=240)
    assert j["status"] == "succeeded", j
    q = stack.queue()
    info = q.get_job(job)
    assert info["worker"] != victim and info["deliveries"] >= 2  # reclaimed by the other worker
    assert q.frame_count(job) == j["frames_total"] == j["frames_done"] == 900
    check_result(stack.result(job), 900, 160, 96, tracks=(0, 1))


def test_sigterm_drains_and_requeues(stack, long_clip):
    stack.ensure_workers(2)
    job = stack.submit(long_clip, {"boxes": [TWO_PEOPLE] * 900})
    victim = _holder(stack, job)
    proc = stack.workers[victim][0]
    proc.send_signal(signal.SIGTERM)  # drain timeout 1 s: the job cannot finish, so it is requeued
    assert proc.wait(60) == 0
    log = stack.log(victim)
    assert "requeued" in log and "stopped" in log
    q = stack.queue()
    assert victim not in [w["worker_id"] for w in q.live_workers()]  # deregistered at once
    j = stack.wait(job, timeout=240)
    assert j["status"] == "succeeded", j
    assert q.get_job(job)["worker"] != victim
    check_result(stack.result(job), 900, 160, 96, tracks=(0, 1))


def test_dead_letter_after_too_many_deliveries(stack, shared_data, e2e_model):
    """A job whose workers died worker_max_deliveries (3) times without storing a frame is dead-lettered:
    the job fails (docs/architecture.md, "Delivery guarantees")."""
    import shutil

    from service.queue_recovery import Recovery

    # A model no running worker serves, so the entry waits in its stream until we take it.
    shutil.copy(e2e_model, e2e_model.parent / "dl-model.safetensors")
    q = stack.queue()
    # The API refuses a model no live worker serves (model_not_served): "crashed-worker" served it at submit.
    q.heartbeat("crashed-worker", {"models": ["dl-model"]})
    job = stack.submit(shared_data / "videos" / "soccer.mp4", {"model": "dl-model"})
    q.deregister("crashed-worker")
    q.ensure_groups(["dl-model"])
    (model, entry, jid), = q.claim("crashed-worker", ["dl-model"], 1, None)
    assert jid == job
    for n in range(2):  # taken over twice more by workers that crashed too, storing nothing
        q.r.xclaim(q.stream_key(model), "workers", f"crashed-worker-{n}", 0, [entry])
        assert Recovery(q).strike(job) == n + 1  # what a worker's takeover counts
    wid = stack.start_worker(models=("dl-model",))  # reclaims it after worker_reclaim_idle_ms
    j = stack.wait(job, timeout=180)
    assert j["status"] == "failed" and j["error"]["code"] == "too_many_deliveries", j
    dead = [fields for _, fields in q.r.xrange(q.dead_key)]
    assert any(f[b"job_id"].decode() == job for f in dead)
    assert q.r.xlen(q.stream_key(model)) == 0
    assert "dead-lettered" in stack.log(wid)


def test_connection_outlives_retry_after(make_stack):
    """A client that waits Retry-After and reuses its keep-alive connection finds it open
    (VIDPOSE_API_KEEP_ALIVE_S > VIDPOSE_RETRY_AFTER_S; at equal values uvicorn closed it: resets)."""
    import http.client
    import time
    from urllib.parse import urlparse

    stack = make_stack(workers=1, VIDPOSE_RETRY_AFTER_S=1, VIDPOSE_API_KEEP_ALIVE_S=3)
    u = urlparse(stack.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            assert r.status == 200
            r.read()
            time.sleep(1.5)  # Retry-After (1 s) and a margin, well under the keep-alive (3 s)
        sock = conn.sock
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        assert r.status == 200 and conn.sock is sock  # the same connection throughout
        r.read()
        time.sleep(4.5)  # past the keep-alive: the server has closed it (the setting is what applies)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
            conn.request("GET", "/healthz")
            conn.getresponse()
    finally:
        conn.close()


def test_job_fails_when_its_model_loses_every_worker(make_stack, long_clip):
    """The only worker of a model dies (kill -9) mid-job: the job does not wait forever, it fails with
    model_not_served after VIDPOSE_UNSERVED_TIMEOUT_S (3 s here, once the worker's heartbeat is 2 s old)."""
    stack = make_stack(workers=1, **{**STACK_ENV, "VIDPOSE_WORKER_TTL_S": 2, "VIDPOSE_UNSERVED_TIMEOUT_S": 3})
    job = stack.submit(long_clip, {"boxes": [TWO_PEOPLE] * 900})
    victim = _holder(stack, job)
    stack.workers[victim][0].kill()
    stack.workers[victim][0].wait()
    killed = time.monotonic()
    j = stack.wait(job, timeout=60)
    waited = time.monotonic() - killed
    assert j["status"] == "failed" and j["error"]["code"] == "model_not_served", j
    assert "no worker is live" in j["error"]["message"]
    assert waited >= 3, waited  # not before the timeout
    assert 0 < j["frames_done"] < 900  # what was stored stays readable
    assert stack.queue().queue_length(stack.env["VIDPOSE_DEFAULT_MODEL"]) == 0
    assert "model_not_served" in stack.log("api")
