"""Chaos in the suite (issue #14): API + 2 workers + Redis with AOF on loopback; workers killed (SIGKILL)
10 times at random while they hold jobs, Redis restarted 4 times (fast and slow); every job succeeds,
every frame is stored exactly once, results are byte-identical to a run without faults, and the dead
workers' consumers leave the group. bench/chaos.py runs the same at larger counts."""

from __future__ import annotations

import time

import pytest

from bench.chaos import CHAOS_ENV, Chaos, make_specs, run_faults
from service.embedded_redis import RedisServer
from tests.e2e.conftest import ServiceStack

pytestmark = pytest.mark.slow


def test_chaos_kills_and_redis_restarts(e2e_model, tmp_path, shared_data):
    server = RedisServer(data_dir=str(tmp_path / "redis"), appendonly=True).start()
    stack = ServiceStack(server.url, e2e_model, tmp_path, **CHAOS_ENV)
    events: list[str] = []
    t0 = time.monotonic()
    try:
        stack.start_api()
        for _ in range(2):
            stack.start_worker()
        stack.wait_ready()
        specs = make_specs(tmp_path)
        chaos = Chaos(stack, server, seed=14,
                      log=lambda m: events.append(f"{time.monotonic() - t0:.1f}s {m}"))
        refs = chaos.reference(specs)
        run_faults(chaos, specs, kills=10, restarts=[0.0, 0.01, 0.05, 2.0], min_jobs=10, active=4)
        chaos.wait_all(timeout=300)
        report = chaos.verify(specs, refs)
        chaos.check_consumers(CHAOS_ENV["VIDPOSE_WORKER_TTL_S"])
        resumed = sum("resumes:" in stack.log(w) for w in stack.workers)
    finally:
        stack.close()
        server.stop()
    assert report.kills == 10 and len(report.redis_restarts) == 4, events
    assert report.jobs >= 10 and resumed >= 1, (report, events)  # taken-over jobs resumed
    assert report.ok(), (report, events)
    print("\n".join(events), report)
