"""Jobs of a model no live worker serves fail with model_not_served after VIDPOSE_UNSERVED_TIMEOUT_S
(service/api/stranded.py), on real Redis, read back over real HTTP. The check runs with a given `now`
so the test does not wait out the timeout; the worker heartbeats are real."""

from __future__ import annotations

import json

from service.api.stranded import StrandedJobs

OTHER = "other-model"


def submit(c, clip, model: str | None = None) -> str:
    data = {"options": json.dumps({"model": model})} if model else None
    with open(clip, "rb") as f:
        r = c.post("/estimate", files={"video": ("a.mp4", f, "video/mp4")}, data=data)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def check(stranded: StrandedJobs, now: float) -> int:
    stranded.queue.r.delete(f"{stranded.queue.prefix}:stranded_lock")  # one check per call, not per period
    return stranded.check(now)


def test_unserved_jobs_fail_after_the_timeout(api_factory, clips):
    api = api_factory(models=["test-model", OTHER], unserved_timeout_s=60)
    stranded = StrandedJobs(api.settings, api.queue)
    with api.client() as c:
        waiting = submit(c, clips["soccer"], OTHER)  # no live worker at all: queued
        t0 = float(api.queue.get_job(waiting)["created_at"])
        api.queue.heartbeat("w-1", {"models": ["test-model"], "device": "cpu"})
        served = submit(c, clips["soccer"])  # test-model is served (by nobody who takes jobs, here)
        backlog = api.queue.backlog_frames()

        assert check(stranded, t0 + 1) == 0  # the count starts
        assert check(stranded, t0 + 59) == 0
        api.queue.heartbeat("w-1", {"models": ["test-model"], "device": "cpu"})
        assert check(stranded, t0 + 62) == 1
        job = c.get(f"/jobs/{waiting}").json()
        assert job["status"] == "failed" and job["error"]["code"] == "model_not_served", job
        assert f"'{OTHER}'" in job["error"]["message"] and "served now: test-model" in job["error"]["message"]
        assert "VIDPOSE_UNSERVED_TIMEOUT_S" in job["error"]["message"]
        assert c.get(f"/jobs/{served}").json()["status"] == "queued"  # its model is served: untouched
        assert api.queue.queue_length(OTHER) == 0  # the entry is acked and deleted
        assert api.queue.backlog_frames() == backlog - job["frames_total"]  # its frames released
        assert check(stranded, t0 + 600) == 0  # the served model's job waits as long as it takes


def test_the_count_starts_again_when_a_worker_serves_the_model(api_factory, clips):
    api = api_factory(models=["test-model", OTHER], unserved_timeout_s=60)
    stranded = StrandedJobs(api.settings, api.queue)
    with api.client() as c:
        job = submit(c, clips["soccer"], OTHER)
        t0 = float(api.queue.get_job(job)["created_at"])
        assert check(stranded, t0) == 0
        api.queue.heartbeat("w-2", {"model": OTHER, "device": "cpu"})
        assert check(stranded, t0 + 50) == 0  # served: the mark is cleared
        api.queue.deregister("w-2")  # ... and its worker dies
        assert check(stranded, t0 + 70) == 0  # unserved again since t0 + 70, not since t0
        assert check(stranded, t0 + 129) == 0
        assert check(stranded, t0 + 131) == 1
        assert c.get(f"/jobs/{job}").json()["error"]["code"] == "model_not_served"


def test_no_failure_when_off_or_when_a_worker_does_not_say_what_it_serves(api_factory, clips):
    api = api_factory(models=["test-model", OTHER], unserved_timeout_s=60)
    with api.client() as c:
        job = submit(c, clips["soccer"], OTHER)
    t0 = float(api.queue.get_job(job)["created_at"])
    off = StrandedJobs(api.settings.model_copy(update={"unserved_timeout_s": 0}), api.queue)
    assert check(off, t0) == 0 and check(off, t0 + 10**6) == 0
    stranded = StrandedJobs(api.settings, api.queue)
    api.queue.heartbeat("w-3", {"device": "cpu"})  # an old worker: no model list
    assert check(stranded, t0) == 0 and check(stranded, t0 + 10**6) == 0
    api.queue.deregister("w-3")
    assert check(stranded, t0 + 10**6) == 0  # the count starts now
    assert check(stranded, t0 + 10**6 + 61) == 1
    assert api.queue.get_job(job)["status"] == "failed"


def test_one_replica_checks_per_period(api_factory):
    api = api_factory(unserved_timeout_s=60)
    a, b = StrandedJobs(api.settings, api.queue), StrandedJobs(api.settings, api.queue)
    assert a._lock() and not b._lock()
