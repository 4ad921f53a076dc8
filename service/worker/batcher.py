"""Dynamic batcher shared by every job a worker holds.

Job threads submit windows; one scheduler thread (vLLM style: the scheduler
owns batching, the engine owns the model) forms batches of up to `max_batch`
windows with the same batch key (model + decode options) and runs one when it
is full or when its oldest window has waited `max_wait_s`. Windows of
different jobs share a batch. cancel(job_id) drops a job's pending windows at
once, so a cancelled job costs at most the batch already running.

Results go back the way continuous-batching servers return them: each submit
names a reply queue, and the scheduler puts every finished batch's outputs, per
request, on the queue its items came with — ("done", items, outputs),
("error", items, exception) or ("dropped", items, None) for items cancel()
removed. The batcher never calls back into a job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

RunBatch = Callable[[list[Any]], list[Any]]


class Reply(Protocol):
    """Where a submitter's outputs go (a queue.Queue): put((kind, items, payload))."""

    def put(self, item: tuple) -> None: ...


def _by_reply(items: list[Any], replies: list[Reply]) -> list[tuple[Reply, list[int]]]:
    """Item positions grouped by reply queue, in first-seen order."""
    groups: dict[int, tuple[Reply, list[int]]] = {}
    for i, reply in enumerate(replies):
        groups.setdefault(id(reply), (reply, []))[1].append(i)
    return list(groups.values())


class DynamicBatcher:
    """Items need `.job_id`, `.batch_key` and a writable `.enqueued_at`.

    run_batch(items) -> one output per item (called on the scheduler thread).
    observe(batch, wait_s) records metrics for each batch that runs (wait_s: its oldest item's wait).
    """

    def __init__(self, max_batch: int, max_wait_s: float, run_batch: RunBatch,
                 observe: Callable[[list[Any], float], None] | None = None, clock=time.monotonic):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.run_batch = run_batch
        self.observe = observe or (lambda batch, wait: None)
        self.clock = clock
        self._queues: OrderedDict[tuple, deque] = OrderedDict()  # batch key -> FIFO of (item, reply)
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self.batches_run = 0

    # -- producers -----------------------------------------------------------------------
    def submit(self, items: list[Any], reply: Reply) -> None:
        """Queue items; their outputs will be put on `reply`."""
        if not items:
            return
        now = self.clock()
        with self._cond:
            for item in items:
                item.enqueued_at = now
                self._queues.setdefault(item.batch_key, deque()).append((item, reply))
            self._cond.notify_all()

    def cancel(self, job_id: str) -> int:
        """Drop every pending item of a job (each reply queue is told: "dropped"); returns how many."""
        dropped = []
        with self._cond:
            for key in list(self._queues):
                q = self._queues[key]
                keep = deque(e for e in q if e[0].job_id != job_id)
                dropped += [e for e in q if e[0].job_id == job_id]
                if keep:
                    self._queues[key] = keep
                else:
                    del self._queues[key]
        items, replies = [e[0] for e in dropped], [e[1] for e in dropped]
        for reply, idx in _by_reply(items, replies):
            reply.put(("dropped", [items[i] for i in idx], None))
        return len(dropped)

    def pending(self, job_id: str | None = None) -> int:
        with self._cond:
            return sum(1 for q in self._queues.values() for e in q if job_id is None or e[0].job_id == job_id)

    @property
    def busy(self) -> bool:
        return self._busy

    # -- scheduler -----------------------------------------------------------------------
    def next_batch(self, block: bool = True) -> list[Any] | None:
        """The next batch to run: full, or its oldest item waited max_wait_s, as (item, reply) pairs.
        None when stopping (or, with block=False, when nothing is due yet)."""
        with self._cond:
            while not self._stop:
                if self._queues:
                    # The key whose head waited longest goes first (fairness across keys).
                    key, q = min(self._queues.items(), key=lambda kv: kv[1][0][0].enqueued_at)
                    waited = self.clock() - q[0][0].enqueued_at
                    if len(q) >= self.max_batch or waited >= self.max_wait_s:
                        batch = [q.popleft() for _ in range(min(self.max_batch, len(q)))]
                        if not q:
                            del self._queues[key]
                        self._busy = True
                        self.observe([e[0] for e in batch], waited)
                        return batch
                    if not block:
                        return None
                    self._cond.wait(timeout=self.max_wait_s - waited)
                else:
                    if not block:
                        return None
                    self._cond.wait(timeout=0.5)
            return None

    def run_once(self, batch: list[tuple[Any, Reply]]) -> None:
        """Run one batch and put each submitter's outputs on its reply queue."""
        items, replies = [e[0] for e in batch], [e[1] for e in batch]
        try:
            results: list[Any] | BaseException = self.run_batch(items)
        except Exception as exc:  # a failing batch fails its jobs, not the scheduler
            log.exception("batch of %d failed", len(items))
            results = exc
        finally:
            self._busy = False
        self.batches_run += 1
        for reply, idx in _by_reply(items, replies):
            mine = [items[i] for i in idx]
            if isinstance(results, BaseException):
                reply.put(("error", mine, results))
            else:
                reply.put(("done", mine, [results[i] for i in idx]))

    def _loop(self) -> None:
        while True:
            batch = self.next_batch()
            if batch is None:
                return
            self.run_once(batch)

    def start(self) -> DynamicBatcher:
        self._thread = threading.Thread(target=self._loop, name="vidpose-batcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
