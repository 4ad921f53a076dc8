"""Two-stage job progress: frames_detected (people found) runs ahead of frames_done (poses stored)."""

from __future__ import annotations

import time

from service.queue import JobQueue
from tests.service.worker.test_worker_loop import Running, make_settings, submit


def test_frames_detected_leads_frames_done_up_to_the_total(redis_client, redis_server, tiny_checkpoint,
                                                            tmp_path, long_clip):
    s = make_settings(redis_server, tiny_checkpoint, tmp_path, worker_max_batch=1, worker_max_wait_ms=0)
    q = JobQueue(redis_client, s)  # pose batches of one window: many small flushes
    job = submit(q, long_clip, frames=240, options={"max_frames": 120})
    samples = []  # (status, frames_detected, frames_done, frames_total), one HMGET each: consistent
    with Running(s):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            j = q.get_job(job, with_options=False)
            samples.append((j["status"], j["frames_detected"], j["frames_done"], j["frames_total"]))
            if j["status"] not in ("queued", "running"):
                break
            time.sleep(0.005)
    status, detected, done, total = samples[-1]
    assert status == "succeeded" and detected == done == total == 120, samples[-1]
    running = [x for x in samples if x[0] == "running"]
    assert all(d >= f for _, d, f, _ in samples), "frames_detected behind frames_done"
    detected_seq = [d for _, d, _, _ in running]
    assert detected_seq == sorted(detected_seq), "frames_detected went down during one run"
    # Detection progress is visible while the job runs: some reading with people found in some but not
    # all frames, and one where detection is ahead of the stored poses.
    assert any(0 < d < 120 for _, d, _, _ in running), running[::20]
    assert any(d > f for _, d, f, _ in running), running[::20]
    # Few writes: frames_detected changes at most per detector batch of 8 frames (and at the end).
    assert all(d % s.detector_batch == 0 or d == 120 for _, d, _, _ in samples)
