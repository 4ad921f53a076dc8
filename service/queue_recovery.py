"""Recovery on the Redis side of the queue: strikes for jobs taken from dead workers, what a resumed job
already has, consumer-group hygiene, and calls that outlive a Redis outage.

The delivery rule (docs/architecture.md, "Delivery guarantees"): an attempt counts against a job (a
*strike*) only when its worker died (its entry was taken over with XAUTOCLAIM) and the attempt stored no
result frame; the strike is shared by the N jobs that worker held (1/N each: which one killed it cannot
be told), and a stored frame clears the strikes. A job that made progress before its worker died is
resumed after its last stored frame and loses nothing; a job that kills its worker again and again at
the same point collects strikes and is dead-lettered once they reach `worker_max_deliveries`. Redis
outages cost no strike: a live worker waits for Redis (`through_outages`) and carries on.

Keys (P = settings.key_prefix): in the job hash `P:job:{id}`, `mark` (frames stored when the current
delivery began) and `strikes`; `P:held:{worker}`, the jobs a worker held at its last heartbeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from service.queue import GROUP, _s
from service.queue_scripts import DELCONSUMER_LUA, STRIKE_LUA

if TYPE_CHECKING:
    from service.queue import JobQueue

log = logging.getLogger(__name__)

# Redis is down, restarting, or still loading its AOF (BusyLoadingError is a ConnectionError).
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
T = TypeVar("T")
HELD_TTL_S = 7 * 86400  # P:held:{worker} outlives its worker by far more than any reclaim delay


def through_outages(fn: Callable[..., T], *args: Any, stop: Callable[[], bool] = lambda: False,
                    what: str = "redis call", first_wait_s: float = 0.02, max_wait_s: float = 1.0,
                    **kwargs: Any) -> T:
    """fn(*args, **kwargs), retried with capped exponential backoff for as long as Redis is unreachable.
    Raises the connection error only once `stop()` is true (the caller gave up: drain, entry lost).
    Use it only for calls that are safe to repeat (every queue script is: see service/queue_scripts.py)."""
    wait, down_since = first_wait_s, None
    while True:
        try:
            result = fn(*args, **kwargs)
        except REDIS_DOWN as e:
            if stop():
                raise
            if down_since is None:
                down_since = time.monotonic()
                log.warning("%s: redis unreachable (%s: %s); retrying until it is back", what,
                            type(e).__name__, e)
            time.sleep(wait)
            wait = min(max_wait_s, wait * 2)
            continue
        if down_since is not None:
            log.info("%s: redis back after %.2fs", what, time.monotonic() - down_since)
        return result


class Recovery:
    """The recovery calls of one JobQueue (same client, same key prefix)."""

    def __init__(self, q: JobQueue):
        self.q = q
        self._strike = q.r.register_script(STRIKE_LUA)
        self._delconsumer = q.r.register_script(DELCONSUMER_LUA)

    def strike(self, job_id: str) -> float:
        """A worker took the job over from a dead one: a strike (shared by the jobs the dead worker held)
        unless the dead worker's attempt stored frames, which clears them. Returns the job's strikes
        (-1 when the job is no longer queued or running)."""
        q = self.q
        return float(_s(self._strike(keys=[q.job_key(job_id), q.frames_key(job_id)], args=[q.prefix])))

    def strikes(self, job_id: str) -> float:
        return float(_s(self.q.r.hget(self.q.job_key(job_id), "strikes")) or 0)

    def note_held(self, worker_id: str, jobs: int) -> None:
        """How many jobs this worker holds (its heartbeat): what a strike is shared by if it dies."""
        self.q.r.set(self._held_key(worker_id), int(jobs), ex=HELD_TTL_S)

    def forget(self, worker_id: str) -> None:
        """A worker that stops cleanly has requeued or finished what it held: its count can go."""
        self.q.r.delete(self._held_key(worker_id))

    def _held_key(self, worker_id: str) -> str:
        return f"{self.q.prefix}:held:{worker_id}"

    def stored_frames(self, job_id: str) -> set[int]:
        """Indices of the result frames already stored for this job (a resumed job skips them)."""
        return {int(_s(k)) for k in self.q.r.hkeys(self.q.frames_key(job_id))}

    def remove_dead_consumers(self, models: list[str]) -> list[str]:
        """Delete, from each model's consumer group, consumers with no heartbeat for worker_ttl_s, idle as
        long, and nothing pending (their jobs were reclaimed or finished). Returns the names removed."""
        q = self.q
        ttl = q.settings.worker_ttl_s
        cutoff = time.time() - ttl
        removed = []
        for model in models:
            stream = q.stream_key(model)
            try:
                consumers = q.r.xinfo_consumers(stream, GROUP)
            except redis.ResponseError:  # no stream or group yet
                continue
            for c in consumers:
                name = _s(c["name"])
                if int(c["pending"]) or int(c["idle"]) <= ttl * 1000:
                    continue
                if int(self._delconsumer(keys=[stream, q.workers_key],
                                         args=[GROUP, name, repr(cutoff), int(ttl * 1000)])):
                    removed.append(name)
        if removed:
            log.info("removed dead consumers %s", removed)
        return removed
