"""The worker loop in-process against a real redis-server and real clips (tiny random-weight model)."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from service.queue import GROUP, JobQueue
from service.settings import Settings


def make_settings(redis_server, tiny_checkpoint, tmp_path, **kw):
    base = dict(redis_url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:8]}", blob_dir=tmp_path,
                models_dir=tiny_checkpoint.parent, default_model="test-model", worker_metrics_port=0,
                worker_threads=1, worker_max_batch=4, worker_max_wait_ms=5, worker_heartbeat_s=0.2,
                worker_reclaim_idle_ms=60000,
                detector="full-frame")  # queue mechanics: one box per frame (hog: test_default_detector_*)
    base.update(kw)
    return Settings(**base)


class Running:
    """A Worker running in a background thread (Worker.run loops until stop())."""

    def __init__(self, settings, **kw):
        from service.worker.worker import Worker

        self.worker = Worker(settings, **kw)
        self.worker.load()
        self.rc = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.rc = self.worker.run()

    def __enter__(self):
        self.thread.start()
        return self.worker

    def __exit__(self, *exc):
        self.worker.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


def submit(q: JobQueue, blob, frames=5, options=None, model="test-model"):
    job_id, created = q.submit("", model, str(blob), options or {}, frames, {})
    assert created
    return job_id


def wait_status(q, job_id, statuses, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = q.get_job(job_id)
        if job and job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not in {statuses} after {timeout}s: {q.get_job(job_id)}")


@pytest.fixture()
def q_and_settings(redis_client, redis_server, tiny_checkpoint, tmp_path):
    s = make_settings(redis_server, tiny_checkpoint, tmp_path)
    return JobQueue(redis_client, s), s


def check_frames(q, job_id, n, width, height, tracks=(0,)):
    frames = q.get_frames(job_id, 0, 10_000)
    assert [f["frame_index"] for f in frames] == list(range(n))
    for f in frames:
        assert sorted(i["track_id"] for i in f["instances"]) == sorted(tracks)
        for inst in f["instances"]:
            kps = np.array(inst["keypoints"], dtype=float)
            assert kps.shape == (17, 3) and np.isfinite(kps).all()
            assert (kps[:, 0] >= 0).all() and (kps[:, 0] <= width - 1).all()
            assert (kps[:, 1] >= 0).all() and (kps[:, 1] <= height - 1).all()
    return frames


def test_job_end_to_end_and_cross_job_batching(q_and_settings, shared_data):
    q, s = q_and_settings
    a = submit(q, shared_data / "videos" / "street_walk.mp4")
    b = submit(q, shared_data / "videos" / "soccer.mp4", options={"diffusion_steps": 0})
    with Running(s) as worker:
        ja = wait_status(q, a, {"succeeded", "failed"})
        jb = wait_status(q, b, {"succeeded", "failed"})
    assert ja["status"] == "succeeded", ja
    assert jb["status"] == "succeeded", jb
    assert ja["frames_done"] == ja["frames_total"] == 5
    assert ja["video"] == {"width": 960, "height": 540, "fps": 5.0, "frames": 5}
    frames = check_frames(q, a, 5, 960, 540)
    assert frames[3]["timestamp_s"] == pytest.approx(0.6)
    assert frames[0]["instances"][0]["bbox"] == [0.0, 0.0, 960.0, 540.0]
    check_frames(q, b, 5, 1280, 720)
    assert worker.batcher.batches_run >= 2
    assert q.r.xpending(q.stream_key("test-model"), GROUP)["pending"] == 0  # both entries acked


def test_default_detector_tracks_several_people(redis_client, redis_server, tiny_checkpoint, tmp_path,
                                                 shared_data):
    """The default pipeline (nanodet when its package is present, as under CI, else hog; + tracker) on
    a real street clip: several people per frame, each track id on one person (boxes of one id move
    little between frames), ids in [0, 999]."""
    from service import detectors

    s = make_settings(redis_server, tiny_checkpoint, tmp_path, detector="auto")
    q = JobQueue(redis_client, s)
    job = submit(q, shared_data / "videos" / "street_walk.mp4")
    with Running(s) as worker:
        j = wait_status(q, job, {"succeeded", "failed"})
        info = worker.info()
    assert j["status"] == "succeeded", j
    expected = "nanodet" if detectors.unavailable("nanodet", s) is None else "hog"
    assert info["default_detector"] == expected and "onnx" not in info["detectors"]
    frames = q.get_frames(job, 0, 100)
    people = [len(f["instances"]) for f in frames]
    assert min(people) >= 2 and sum(people) >= 3 * len(frames), people
    seen: dict[int, list] = {}
    for f in frames:
        ids = [i["track_id"] for i in f["instances"]]
        assert len(ids) == len(set(ids)) and all(0 <= t <= 999 for t in ids)
        for inst in f["instances"]:
            assert 0 <= inst["score"] <= 1
            seen.setdefault(inst["track_id"], []).append(inst["bbox"])
    lasting = [t for t, boxes in seen.items() if len(boxes) >= 3]
    assert len(lasting) >= 2, seen  # people followed over most of the clip
    for t in lasting:
        b = np.array(seen[t])
        centres = b[:, :2] + b[:, 2:] / 2
        assert np.abs(np.diff(centres, axis=0)).max() < 0.5 * b[:, 3].mean(), (t, seen[t])


def test_client_boxes_and_track_ids(q_and_settings, shared_data):
    q, s = q_and_settings
    boxes = {"0": [{"bbox": [100, 50, 80, 200], "track_id": 7}, {"bbox": [400, 60, 90, 210], "track_id": 3}],
             "1": [{"bbox": [102, 50, 80, 200], "track_id": 7}],
             "3": [[400, 60, 90, 210]]}
    job = submit(q, shared_data / "videos" / "street_walk.mp4", options={"boxes": boxes})
    with Running(s):
        j = wait_status(q, job, {"succeeded", "failed"})
    assert j["status"] == "succeeded", j
    frames = q.get_frames(job, 0, 100)
    assert [sorted(i["track_id"] for i in f["instances"]) for f in frames] == [[3, 7], [7], [], [0], []]
    assert frames[0]["instances"][1]["bbox"] == [100.0, 50.0, 80.0, 200.0]


def test_invalid_video_and_options_fail_the_job(q_and_settings, tmp_path, shared_data):
    q, s = q_and_settings
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 1000)
    j1 = submit(q, bad)
    j2 = submit(q, shared_data / "videos" / "soccer.mp4", options={"window": 3})
    with Running(s):
        a = wait_status(q, j1, {"succeeded", "failed"})
        b = wait_status(q, j2, {"succeeded", "failed"})
    assert a["status"] == "failed" and a["error_code"] == "invalid_video"
    assert b["status"] == "failed" and b["error_code"] == "invalid_options" and "T=5" in b["error_message"]
    assert q.backlog_frames() == 0


def test_cancel_running_job_stops_work(q_and_settings, long_clip):
    q, s = q_and_settings
    s = s.model_copy(update={"worker_max_batch": 1, "worker_max_wait_ms": 0})
    job = submit(q, long_clip, frames=240)
    with Running(s) as worker:
        deadline = time.monotonic() + 60
        while (q.get_job(job)["frames_done"] < 3) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert q.cancel(job) == "cancelled"
        t0 = time.monotonic()
        while worker.runs and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        assert not worker.runs  # the job thread stopped and let go
        done_after = q.get_job(job)["frames_done"]
        assert worker.batcher.pending() == 0
        batches = worker.batcher.batches_run
        time.sleep(0.3)
        assert worker.batcher.batches_run == batches  # nothing of that job runs any more
    j = q.get_job(job)
    assert j["status"] == "cancelled" and j["frames_done"] == done_after < 240
    assert q.r.xpending(q.stream_key("test-model"), GROUP)["pending"] == 0


def test_dead_letter_after_too_many_deliveries(redis_client, redis_server, tiny_checkpoint, tmp_path,
                                               shared_data):
    s = make_settings(redis_server, tiny_checkpoint, tmp_path, worker_max_deliveries=1,
                      worker_reclaim_idle_ms=100)
    q = JobQueue(redis_client, s)
    q.ensure_groups(["test-model"])
    job = submit(q, shared_data / "videos" / "soccer.mp4")
    # A worker that took the job and died: the entry stays pending on it.
    assert [e[2] for e in q.claim("dead-worker", ["test-model"], 1, None)] == [job]
    time.sleep(0.15)
    with Running(s):
        j = wait_status(q, job, {"succeeded", "failed"})
    assert j["status"] == "failed" and j["error_code"] == "too_many_deliveries"
    dead = q.r.xrange(q.dead_key)
    assert len(dead) == 1 and dead[0][1][b"job_id"].decode() == job
    assert q.r.xpending(q.stream_key("test-model"), GROUP)["pending"] == 0


def test_reclaim_from_dead_worker_and_live_entries_stay(redis_client, redis_server, tiny_checkpoint, tmp_path,
                                                       shared_data, longer_clip):
    # reclaim idle 2 s vs heartbeat 0.1 s: a 20x margin, so a loaded CI machine stalling a worker thread
    # for a few hundred ms does not look like a dead worker (700 ms was flaky under load)
    s = make_settings(redis_server, tiny_checkpoint, tmp_path, worker_reclaim_idle_ms=2000,
                      worker_heartbeat_s=0.1, worker_max_batch=1, worker_max_wait_ms=0)
    q = JobQueue(redis_client, s)
    q.ensure_groups(["test-model"])
    orphan = submit(q, shared_data / "videos" / "street_walk.mp4")
    q.claim("dead-worker", ["test-model"], 1, None)
    two = [[10, 10, 60, 80], [80, 10, 60, 80]]  # two people per frame: a job of 1800 windows
    long_job = submit(q, longer_clip, frames=900, options={"boxes": [two] * 900})
    with Running(s) as w1:
        assert wait_status(q, orphan, {"succeeded"})["deliveries"] >= 1
        wait_status(q, long_job, {"running"})
        # A second live worker must not steal the long job while w1 heartbeats (idle resets).
        with Running(s.model_copy(update={"worker_metrics_port": 0})) as w2:
            entry = q.get_job(long_job)["entry_id"]
            time.sleep(4.5)  # > 2 x reclaim idle: without the heartbeat's touch it would be reclaimed
            assert q.get_job(long_job)["status"] == "running"
            assert q.deliveries("test-model", entry) == 1
            j = wait_status(q, long_job, {"succeeded", "failed"}, timeout=120)
            assert j["status"] == "succeeded"
            assert j["worker"] == w1.worker_id and not any(k[1] == j["entry_id"] for k in w2.runs)
    check_frames(q, long_job, 900, 160, 96, tracks=(0, 1))


def test_drain_requeues_unfinished_job(q_and_settings, long_clip):
    q, s = q_and_settings
    s = s.model_copy(update={"worker_max_batch": 1, "worker_max_wait_ms": 0})
    job = submit(q, long_clip, frames=240)
    r = Running(s, drain_timeout_s=0.0)
    with r as worker:
        wait_status(q, job, {"running"})
        old_entry = q.get_job(job)["entry_id"]
    assert r.rc == 0 and not worker.runs
    j = q.get_job(job)
    assert j["status"] == "queued" and j["entry_id"] != old_entry
    assert q.r.xpending(q.stream_key("test-model"), GROUP)["pending"] == 0
    assert q.live_workers() == []  # deregistered
    assert not q.r.keys(f"{s.key_prefix}:held:*")  # and its held-jobs count is gone
    with Running(s):  # another worker picks the requeued job up and finishes it
        assert wait_status(q, job, {"succeeded", "failed"}, timeout=120)["status"] == "succeeded"
    check_frames(q, job, 240, 160, 96)


def test_container_frame_count_corrected_by_decoding(q_and_settings, tmp_path):
    """A truncated file whose header still claims 20 frames: the job covers the frames that decode."""
    import cv2

    path = tmp_path / "cut.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(20):
        w.write(np.full((48, 64, 3), i * 10, np.uint8))
    w.release()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    cap = cv2.VideoCapture(str(path))
    claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    q, s = q_and_settings
    job = submit(q, path, frames=claimed)
    with Running(s):
        j = wait_status(q, job, {"succeeded", "failed"})
    assert j["status"] == "succeeded", j
    n = j["frames_total"]
    assert 0 < n < claimed == 20
    assert j["frames_done"] == n and j["video"]["frames"] == n
    check_frames(q, job, n, 64, 48)
    assert q.backlog_frames() == 0
