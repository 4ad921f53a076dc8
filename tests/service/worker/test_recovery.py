"""Issue #14, worker side: Redis restarts never fail a job, a job taken from a dead worker resumes after
its last stored frame with the same result, strikes count only attempts that stored nothing, and dead
consumers leave the consumer group. Real redis-server processes, the worker in-process."""

from __future__ import annotations

import time

import pytest
import redis

from service.embedded_redis import RedisServer
from service.metrics import FRAMES_PROCESSED
from service.queue import GROUP, JobQueue
from service.queue_recovery import Recovery, through_outages
from tests.service.worker.test_worker_loop import Running, make_settings, submit, wait_status


def frames_bytes(q: JobQueue, job_id: str) -> dict[bytes, bytes]:
    return q.r.hgetall(q.frames_key(job_id))


def processed() -> float:
    return FRAMES_PROCESSED.labels("test-model")._value.get()


@pytest.fixture()
def aof_redis(tmp_path):
    """A redis-server of its own (AOF on, like `vidpose serve`), to be restarted on the same port."""
    server = RedisServer(data_dir=str(tmp_path / "redis"), appendonly=True).start()
    yield server
    server.stop()


def restart(server: RedisServer, down_s: float) -> None:
    server.stop()  # SIGTERM: Redis writes its AOF out and exits; clients see connection refused
    time.sleep(down_s)
    server.start()


def test_redis_restarts_during_a_job_do_not_fail_it(aof_redis, tiny_checkpoint, tmp_path, make_clip,
                                                    shared_data):
    """Four restarts of Redis (three fast, one of 1.5 s) while a job runs: it succeeds on its first
    delivery, every frame once, byte-identical to a run without restarts."""
    clip = make_clip(tmp_path / "clip.mp4", shared_data / "videos" / "soccer.mp4", 120)
    s = make_settings(aof_redis, tiny_checkpoint, tmp_path, worker_max_batch=1, worker_max_wait_ms=0)
    r = redis.Redis.from_url(aof_redis.url)
    q = JobQueue(r, s)
    ref = submit(q, clip, frames=120)
    with Running(s):
        assert wait_status(q, ref, {"succeeded", "failed"}, timeout=120)["status"] == "succeeded"
        job = submit(q, clip, frames=120)
        seen = []
        for down in (0.0, 0.01, 0.05, 1.5):
            deadline = time.monotonic() + 60
            while q.get_job(job)["frames_done"] <= 10 * len(seen) and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(q.get_job(job)["frames_done"])
            restart(aof_redis, down)
        j = through_outages(wait_status, q, job, {"succeeded", "failed"}, timeout=120)
    assert 0 < seen[0] and seen[-1] < 120, seen  # the restarts hit the running job
    assert j["status"] == "succeeded", j
    assert j["deliveries"] == 1 and Recovery(q).strikes(job) == 0  # never reclaimed, never retried
    assert j["frames_done"] == q.frame_count(job) == 120
    assert frames_bytes(q, job) == frames_bytes(q, ref)
    assert q.r.xpending(q.stream_key("test-model"), GROUP)["pending"] == 0


def test_reclaimed_job_resumes_after_its_stored_frames(redis_client, redis_server, tiny_checkpoint, tmp_path,
                                                       make_clip, shared_data, human_models):
    """A dead worker stored frames 0-9 and 12 of a job with several tracked people; the worker that
    takes it over runs only the other frames, and the whole result is byte-identical to an uninterrupted
    run (same track ids, same windows around the resume point). With worker_max_deliveries=1 the dead
    worker's attempt, which stored frames, costs no strike."""
    clip = make_clip(tmp_path / "people.mp4", shared_data / "videos" / "vtest.avi", 24, size=(384, 288))
    s = make_settings(redis_server, tiny_checkpoint, tmp_path, detector="auto", worker_max_deliveries=1,
                      worker_reclaim_idle_ms=300)
    q = JobQueue(redis_client, s)
    q.ensure_groups(["test-model"])
    ref = submit(q, clip, frames=24)
    with Running(s):
        assert wait_status(q, ref, {"succeeded", "failed"}, timeout=120)["status"] == "succeeded"
    full = frames_bytes(q, ref)
    tracks = {i["track_id"] for f in q.get_frames(ref, 0, 24) for i in f["instances"]}
    assert len(full) == 24 and len(tracks) >= 3, tracks  # several people tracked: ids matter

    job = submit(q, clip, frames=24)
    assert [e[2] for e in q.claim("dead-worker", ["test-model"], 1, None)] == [job]
    assert q.start(job, "dead-worker", 24, {})
    stored = [str(i).encode() for i in [*range(10), 12]]
    q.r.hset(q.frames_key(job), mapping={k: full[k] for k in stored})
    before = processed()
    time.sleep(0.35)  # the dead worker's entry is idle past worker_reclaim_idle_ms
    with Running(s):
        j = wait_status(q, job, {"succeeded", "failed"}, timeout=120)
    assert j["status"] == "succeeded", j
    assert processed() - before == 24 - len(stored)  # only the missing frames were run and written
    assert frames_bytes(q, job) == full
    assert j["frames_done"] == 24 and j["deliveries"] == 2 and Recovery(q).strikes(job) == 0


def test_strikes_count_only_attempts_that_stored_nothing(redis_client, redis_server, tiny_checkpoint,
                                                         tmp_path):
    """Each takeover from a dead worker: no frame stored in its attempt = a strike shared by the jobs that
    worker held; a stored frame clears the strikes."""
    s = make_settings(redis_server, tiny_checkpoint, tmp_path)
    q = JobQueue(redis_client, s)
    rec = Recovery(q)
    q.ensure_groups(["test-model"])
    job = submit(q, tmp_path / "x.mp4", frames=10)
    q.claim("w1", ["test-model"], 1, None)
    assert rec.strike(job) == 1  # w1 died before storing anything (it held only this job)
    q.start(job, "w2", 10, {})
    rec.note_held("w2", 4)
    assert rec.strike(job) == 1.25  # w2 held 4 jobs and stored nothing: a quarter of a strike each
    q.start(job, "w3", 10, {})
    q.write_frames(job, {0: {"frame_index": 0}})
    assert rec.strike(job) == 0  # w3 stored a frame before it died: strikes cleared
    rec.note_held("w3", 1)
    assert rec.strike(job) == 1  # the next one stored nothing more
    q.write_frames(job, {1: {"frame_index": 1}})
    assert rec.stored_frames(job) == {0, 1}
    entry = q.get_job(job)["entry_id"]
    assert q.requeue(job, "test-model", entry) and q.requeue(job, "test-model", entry)  # idempotent
    assert q.r.xlen(q.stream_key("test-model")) == 1  # one fresh entry, not two
    q.claim("w4", ["test-model"], 1, None)
    assert rec.strike(job) == 2  # the requeued delivery began with 2 frames stored and added none
    q.finish(job, "test-model", q.get_job(job)["entry_id"], "cancelled")
    assert rec.strike(job) == -1


def test_dead_consumers_leave_the_group(redis_client, redis_server, tiny_checkpoint, tmp_path, shared_data):
    """Consumers with no heartbeat, idle past worker_ttl_s and nothing pending are removed; one that still
    holds an entry stays (deleting it would drop the entry) until the entry is reclaimed; a consumer whose
    worker heartbeats stays. A running worker does this on its own."""
    s = make_settings(redis_server, tiny_checkpoint, tmp_path, worker_ttl_s=0.5, worker_reclaim_idle_ms=1500)
    q = JobQueue(redis_client, s)
    rec = Recovery(q)
    q.ensure_groups(["test-model"])
    stream = q.stream_key("test-model")

    def consumers():
        return {c["name"].decode() for c in q.r.xinfo_consumers(stream, GROUP)}

    done = [submit(q, shared_data / "videos" / "soccer.mp4") for _ in range(3)]
    for name in ("dead-1", "dead-2", "alive"):  # each took one job ...
        q.claim(name, ["test-model"], 1, None)
    for job in done:  # ... and the jobs ended since (reclaimed and finished elsewhere, or cancelled)
        q.finish(job, "test-model", q.get_job(job)["entry_id"], "cancelled")
    held = submit(q, shared_data / "videos" / "street_walk.mp4")
    q.claim("dead-holding", ["test-model"], 1, None)
    assert consumers() == {"dead-1", "dead-2", "alive", "dead-holding"}
    time.sleep(0.6)
    q.heartbeat("alive", {})
    assert sorted(rec.remove_dead_consumers(["test-model"])) == ["dead-1", "dead-2"]
    assert consumers() == {"alive", "dead-holding"}
    assert q.r.xpending(stream, GROUP)["pending"] == 1  # the held entry is still pending

    q.deregister("alive")  # now "alive" is gone too
    with Running(s) as worker:
        assert wait_status(q, held, {"succeeded"}, timeout=60)  # reclaimed after 1.5 s idle, then run
        deadline = time.monotonic() + 10
        while consumers() != {worker.worker_id} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert consumers() == {worker.worker_id}
