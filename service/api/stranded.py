"""Jobs stranded on a model that no live worker serves: they fail after a stated time, never wait forever.

POST /estimate refuses a model no live worker serves (422 model_not_served), but with no live worker at
all it queues the job (workers may be starting), and a model's workers can all die while its jobs wait
or run. Every `period(settings)` seconds one API replica (a Redis lock) looks at each model stream that
holds entries:
- some live worker serves the model, or a live worker has not said what it serves: nothing to do, and
  the model's "unserved since" mark is cleared;
- else the mark `P:unserved:{model}` is set (first time seen) and kept alive; an entry that has waited
  `unserved_timeout_s` since both the mark and its own enqueue time (a stream id is a millisecond
  timestamp) fails its job with `model_not_served`, naming the models that are served now.
The mark expires on its own when no API replica refreshes it (all stopped): a restarted API starts the
count again rather than failing jobs for time it did not watch. Timeout 0 turns this off.
"""

from __future__ import annotations

import logging
import secrets
import time

from service import metrics
from service.api import catalog
from service.queue import JobQueue, _s
from service.settings import Settings

log = logging.getLogger("vidpose.api.stranded")


def period(settings: Settings) -> float:
    """Seconds between checks: a tenth of the timeout, between 0.5 s and 30 s."""
    return min(30.0, max(0.5, settings.unserved_timeout_s / 10))


class StrandedJobs:
    def __init__(self, settings: Settings, queue: JobQueue):
        self.settings = settings
        self.queue = queue
        self.token = secrets.token_hex(8)

    def _mark_key(self, model: str) -> str:
        return f"{self.queue.prefix}:unserved:{model}"

    def _lock(self) -> bool:
        ms = max(200, int(period(self.settings) * 900))
        return bool(self.queue.r.set(f"{self.queue.prefix}:stranded_lock", self.token, nx=True, px=ms))

    def _streams(self) -> dict[str, str]:
        """Model name -> stream key of every model stream in Redis."""
        head = f"{self.queue.prefix}:jobs:"
        keys = (_s(k) for k in self.queue.r.scan_iter(match=f"{head}*", count=1000))
        return {k[len(head):]: k for k in keys}

    def check(self, now: float | None = None) -> int:
        """One pass (blocking: run it in a thread); returns the jobs it failed."""
        timeout = self.settings.unserved_timeout_s
        if timeout <= 0 or not self._lock():
            return 0
        now = time.time() if now is None else now
        r = self.queue.r
        served = catalog.served_models(self.queue.live_workers())
        if served is None:  # a live worker that has not said what it serves might serve any model
            return 0
        failed = 0
        for model, stream in self._streams().items():
            mark = self._mark_key(model)
            if model in served or not r.xlen(stream):
                r.delete(mark)
                continue
            # The mark lives for three periods: refreshed by every check while the model stays unserved.
            r.set(mark, repr(now), nx=True)
            r.pexpire(mark, int(3 * period(self.settings) * 1000) + 1000)
            since = float(_s(r.get(mark)) or now)
            failed += self._fail_waiting(model, stream, since, now, served)
        return failed

    def _fail_waiting(self, model: str, stream: str, since: float, now: float, served: list[str]) -> int:
        timeout, failed, start = self.settings.unserved_timeout_s, 0, "-"
        message = (f"no live worker served model {model!r} for {timeout:g} s (VIDPOSE_UNSERVED_TIMEOUT_S); "
                   + (f"served now: {', '.join(served)}" if served else "no worker is live"))
        while True:
            entries = self.queue.r.xrange(stream, min=start, max="+", count=500)
            for entry_id, fields in entries:
                eid = _s(entry_id)
                job_id = _s(fields.get(b"job_id", fields.get("job_id")))
                enqueued = int(eid.split("-")[0]) / 1000
                if now - max(since, enqueued) >= timeout and self.queue.fail_stranded(job_id, model, eid,
                                                                                        message):
                    failed += 1
                    metrics.API_JOBS_FINISHED.labels("failed").inc()
                    log.warning("job %s failed (model_not_served): %s", job_id, message)
            if len(entries) < 500:
                return failed
            start = "(" + _s(entries[-1][0])

