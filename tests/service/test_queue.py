"""JobQueue against a real redis-server: transitions, exactly-once backlog, reclaim, idempotency."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from service.queue import GROUP, JobQueue
from service.settings import Settings

MODEL = "m1"


@pytest.fixture()
def q(redis_client):
    queue = JobQueue(redis_client, Settings(key_prefix="t", job_ttl_s=100, worker_ttl_s=5))
    queue.ensure_groups([MODEL])
    return queue


def _submit(q, frames=10, owner="", key=None, model=MODEL):
    return q.submit(owner, model, "/blobs/x.mp4", {"window": 5}, frames,
                    {"width": 64, "height": 48, "fps": 5.0, "frames": frames}, idempotency_key=key)


def _frame(i):
    return {"frame_index": i, "timestamp_s": i / 5, "instances": []}


def test_submit_creates_queued_job_and_counts_backlog(q):
    jid, created = _submit(q, frames=10)
    assert created and len(jid) >= 22
    job = q.get_job(jid)
    assert job["status"] == "queued" and job["model"] == MODEL and job["frames_total"] == 10
    assert job["options"] == {"window": 5} and job["video"]["frames"] == 10
    assert job["created_at"] > 0 and job["started_at"] is None and job["error_code"] is None
    assert q.backlog_frames() == 10 and q.queue_length(MODEL) == 1
    assert q.get_job("nope") is None


def test_full_worker_flow_releases_backlog_once_and_acks(q, redis_client):
    jid, _ = _submit(q, frames=4)
    taken = q.claim("w1", [MODEL], count=5, block_ms=None)
    assert [(m, j) for m, _, j in taken] == [(MODEL, jid)]
    entry = taken[0][1]
    assert q.deliveries(MODEL, entry) == 1
    # The worker decodes 3 frames, not the 4 the API probed: backlog follows.
    assert q.start(jid, "w1", 3, {"width": 64, "height": 48, "fps": 5.0, "frames": 3})
    assert q.backlog_frames() == 3
    assert q.set_frames_total(jid, 4, {"frames": 4}) and q.backlog_frames() == 4
    assert q.set_frames_total(jid, 3, {"width": 64, "height": 48, "fps": 5.0, "frames": 3})
    assert q.backlog_frames() == 3 and q.get_job(jid)["deliveries"] == 1
    assert q.get_job(jid)["frames_detected"] == 0
    assert q.set_frames_detected(jid, 2) and q.get_job(jid)["frames_detected"] == 2
    assert q.write_frames(jid, {0: _frame(0), 1: _frame(1)}) == 2
    assert q.get_job(jid)["frames_detected"] == 2  # no frames_detected given: left as it was
    assert q.write_frames(jid, {1: _frame(1), 2: _frame(2)}, frames_detected=3) == 3  # frame 1: no duplicate
    assert q.get_job(jid, with_options=False)["frames_detected"] == 3
    assert q.get_job(jid)["status"] == "running"
    assert q.finish(jid, MODEL, entry, "succeeded")
    assert not q.finish(jid, MODEL, entry, "failed", "x", "y")  # second finish: no-op
    job = q.get_job(jid)
    assert job["status"] == "succeeded" and job["frames_done"] == 3
    assert job["finished_at"] >= job["started_at"]
    assert q.backlog_frames() == 0
    assert [f["frame_index"] for f in q.get_frames(jid, 0, 10)] == [0, 1, 2]
    assert [f["frame_index"] for f in q.get_frames(jid, 1, 1)] == [1]
    assert 0 < redis_client.ttl(q.job_key(jid)) <= 100 and 0 < redis_client.ttl(q.frames_key(jid)) <= 100
    assert redis_client.xpending(q.stream_key(MODEL), GROUP)["pending"] == 0
    assert q.queue_length(MODEL) == 0
    assert q.cancel(jid) == "succeeded"  # cannot cancel a finished job
    assert not q.set_frames_total(jid, 9, {}) and q.backlog_frames() == 0
    assert not q.set_frames_detected(jid, 1) and q.get_job(jid)["frames_detected"] == 3  # finished: kept


def test_finish_is_exactly_once_under_races(q):
    jids = [_submit(q, frames=7)[0] for _ in range(5)]
    entries = {j: e for _, e, j in q.claim("w", [MODEL], 10, None)}
    wins = []

    def racer(jid, kind):
        if kind == "cancel":
            wins.append(q.cancel_job(jid)[0])
        else:
            wins.append(q.finish(jid, MODEL, entries[jid], kind))

    threads = [threading.Thread(target=racer, args=(j, k)) for j in jids
               for k in ("succeeded", "failed", "cancel", "succeeded")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == len(jids)  # one winner per job
    assert q.backlog_frames() == 0


def test_cancel_undelivered_job_removes_its_entry(q, redis_client):
    jid, _ = _submit(q, frames=6)
    assert q.queue_length(MODEL) == 1
    assert q.cancel(jid) == "cancelled"
    assert q.backlog_frames() == 0 and q.is_cancelled(jid)
    assert q.cancel(jid) == "cancelled" and q.cancel_job(jid) == (False, "cancelled")
    assert q.queue_length(MODEL) == 0 and q.claim("w", [MODEL], 1, None) == []  # no worker gets it
    assert q.get_job(jid)["status"] == "cancelled" and q.get_job(jid)["error_code"] == "cancelled"
    assert q.cancel("unknown") is None
    late, _ = _submit(q, frames=1, model="no-group-yet")
    assert q.cancel(late) == "cancelled" and q.queue_length("no-group-yet") == 0


def test_cancel_delivered_job_then_worker_acks_it(q, redis_client):
    jid, _ = _submit(q, frames=6)
    (model, entry, got), = q.claim("w", [MODEL], 1, None)
    assert q.cancel(jid) == "cancelled"
    assert q.queue_length(MODEL) == 1  # held by a worker: it must see the status and ack
    assert got == jid and not q.start(jid, "w", 6, {})
    assert not q.finish(jid, model, entry, "succeeded")  # stays cancelled, entry acked
    assert q.get_job(jid)["status"] == "cancelled"
    assert redis_client.xpending(q.stream_key(MODEL), GROUP)["pending"] == 0
    assert q.queue_length(MODEL) == 0 and q.backlog_frames() == 0


def test_large_frame_writes_and_ack(q):
    jid, _ = _submit(q, frames=6000)
    (_, entry, _), = q.claim("w", [MODEL], 1, None)
    q.start(jid, "w", 6000, {})
    frames = {i: _frame(i) for i in range(6000)}  # 12000 script args: chunked HSET
    assert q.write_frames(jid, frames) == 6000
    assert q.get_frames(jid, 5998, 10) == [_frame(5998), _frame(5999)]
    q.ack(MODEL, entry)
    assert q.queue_length(MODEL) == 0


def test_cancel_running_job_stops_result_writes(q):
    jid, _ = _submit(q, frames=3)
    (_, entry, _), = q.claim("w", [MODEL], 1, None)
    q.start(jid, "w", 3, {})
    assert q.write_frames(jid, {0: _frame(0)}) == 1
    assert q.cancel(jid) == "cancelled"
    assert q.write_frames(jid, {1: _frame(1)}) == 1  # ignored
    assert q.frame_count(jid) == 1 and q.is_cancelled(jid)


def test_reclaim_from_dead_consumer_and_dead_letter(q, redis_client):
    jid, _ = _submit(q, frames=2)
    (_, entry, _), = q.claim("dead-worker", [MODEL], 1, None)
    assert q.reclaim("w2", [MODEL], min_idle_ms=60_000, count=5) == []  # not idle long enough
    time.sleep(0.02)
    assert q.reclaim("w2", [MODEL], min_idle_ms=10, count=5) == [(MODEL, entry, jid)]
    assert q.deliveries(MODEL, entry) == 2
    assert q.dead_letter(jid, MODEL, entry, "delivered 2 times")
    job = q.get_job(jid)
    assert job["status"] == "failed" and job["error_code"] == "too_many_deliveries"
    dead = redis_client.xrange(q.dead_key)
    assert len(dead) == 1 and dead[0][1][b"job_id"] == jid.encode()
    assert q.dead_letter_count() == 1
    assert redis_client.xpending(q.stream_key(MODEL), GROUP)["pending"] == 0
    assert q.backlog_frames() == 0


def test_touch_keeps_a_held_entry_fresh_and_tells_a_lost_one(q):
    jid, _ = _submit(q, frames=2)
    (_, entry, _), = q.claim("w1", [MODEL], 1, None)
    time.sleep(0.05)
    assert q.touch("w1", MODEL, entry)  # still ours: idle time reset, delivery count unchanged
    assert q.reclaim("w2", [MODEL], min_idle_ms=40, count=5) == []
    assert q.deliveries(MODEL, entry) == 1
    time.sleep(0.05)
    assert q.reclaim("w2", [MODEL], min_idle_ms=40, count=5) == [(MODEL, entry, jid)]
    assert not q.touch("w1", MODEL, entry)  # taken over: w1 must let go
    assert q.finish(jid, MODEL, entry, "succeeded") and not q.touch("w2", MODEL, entry)  # acked: gone


def test_requeue_gives_job_back_with_fresh_entry(q, redis_client):
    jid, _ = _submit(q, frames=2)
    (_, entry, _), = q.claim("w1", [MODEL], 1, None)
    q.start(jid, "w1", 2, {})
    q.write_frames(jid, {0: _frame(0)})
    assert q.requeue(jid, MODEL, entry)
    job = q.get_job(jid)
    assert job["status"] == "queued" and job["entry_id"] != entry and job["frames_done"] == 1
    assert q.backlog_frames() == 2
    (_, entry2, got), = q.claim("w2", [MODEL], 1, None)
    assert got == jid and entry2 == job["entry_id"]
    assert redis_client.xpending(q.stream_key(MODEL), GROUP)["pending"] == 1
    assert q.start(jid, "w2", 2, {}) and q.get_job(jid)["deliveries"] == 2
    assert q.finish(jid, MODEL, entry2, "succeeded") and q.backlog_frames() == 0
    # requeue of a finished job only acks
    assert not q.requeue(jid, MODEL, entry2)


def test_idempotency_per_owner(q):
    a, created_a = _submit(q, frames=5, owner="o1", key="k")
    b, created_b = _submit(q, frames=5, owner="o1", key="k")
    c, created_c = _submit(q, frames=5, owner="o2", key="k")
    assert created_a and not created_b and created_c
    assert a == b != c
    assert q.backlog_frames() == 10 and q.queue_length(MODEL) == 2
    assert q.find_idempotent("o1", "k") == a and q.find_idempotent("o1", "other") is None


def test_idempotency_race_creates_one_job(q):
    results = []
    threads = [threading.Thread(target=lambda: results.append(_submit(q, frames=3, owner="o", key="race")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({jid for jid, _ in results}) == 1 and sum(created for _, created in results) == 1
    assert q.backlog_frames() == 3 and q.queue_length(MODEL) == 1


def test_claim_blocks_briefly_and_spans_models(q):
    q.ensure_groups(["m2"])
    t0 = time.monotonic()
    assert q.claim("w", [MODEL, "m2"], 5, block_ms=100) == []
    assert time.monotonic() - t0 >= 0.09
    j1, _ = _submit(q, model=MODEL)
    j2, _ = _submit(q, model="m2")
    got = q.claim("w", [MODEL, "m2"], 5, block_ms=100)
    assert sorted((m, j) for m, _, j in got) == sorted([(MODEL, j1), ("m2", j2)])


def test_group_created_after_submit_sees_earlier_jobs(q):
    jid, _ = _submit(q, model="late")
    q.ensure_groups(["late"])
    q.ensure_groups(["late"])  # idempotent
    assert [j for _, _, j in q.claim("w", ["late"], 5, None)] == [jid]


def test_workers_heartbeat_expiry_and_models(q, redis_client):
    q.heartbeat("w1", {"model": MODEL, "device": "cpu", "pid": 1})
    q.heartbeat("w2", {"model": MODEL, "device": "cpu", "pid": 2})
    assert sorted(w["worker_id"] for w in q.live_workers()) == ["w1", "w2"]
    w1 = next(w for w in q.live_workers() if w["worker_id"] == "w1")
    assert w1["device"] == "cpu" and w1["pid"] == 1 and w1["last_heartbeat"] > 0
    redis_client.zadd(q.workers_key, {"w2": time.time() - 60})  # stale heartbeat
    assert [w["worker_id"] for w in q.live_workers()] == ["w1"]
    q.deregister("w1")
    assert q.live_workers() == []
    q.register_model(MODEL, {"name": MODEL, "version": "abc", "device": "cpu"})
    assert q.list_models() == {MODEL: {"name": MODEL, "version": "abc", "device": "cpu"}}


def test_works_with_decoding_client(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    q = JobQueue(client, Settings(key_prefix="d"))
    q.ensure_groups([MODEL])
    jid, _ = _submit(q)
    (_, entry, got), = q.claim("w", [MODEL], 1, None)
    assert got == jid and q.start(jid, "w", 1, {})
    q.write_frames(jid, {0: _frame(0)})
    assert q.finish(jid, MODEL, entry, "succeeded") and q.get_frames(jid, 0, 5) == [_frame(0)]
    assert q.reclaim("w", [MODEL], 0, 5) == []
    client.close()
