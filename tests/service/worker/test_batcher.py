from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import partial

from service.worker.batcher import DynamicBatcher


@dataclass(eq=False)
class Item:
    job_id: str
    n: int
    batch_key: tuple = ("m",)
    enqueued_at: float = 0.0


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Reply:
    """A reply queue that records what the batcher puts on it."""

    def __init__(self):
        self.done, self.dropped = [], []

    def put(self, msg):
        kind, items, payload = msg
        if kind == "dropped":
            self.dropped.extend(items)
        else:
            self.done.append((items, payload))


def make(max_batch=4, max_wait_s=0.05, clock=None, run=None):
    observed = []
    b = DynamicBatcher(max_batch, max_wait_s, run or (lambda items: [i.n * 10 for i in items]),
                       observe=lambda batch, wait: observed.append((len(batch), wait)),
                       clock=clock or time.monotonic)
    reply = Reply()
    b.submit = partial(b.submit, reply=reply)  # every item of these tests replies to one queue
    return b, reply.done, reply.dropped, observed


def ns(batch):
    return [item.n for item, _ in batch]


def test_full_batch_runs_without_waiting():
    clock = Clock()
    b, _, _, observed = make(max_batch=3, clock=clock)
    b.submit([Item("a", i) for i in range(4)])
    batch = b.next_batch(block=False)
    assert ns(batch) == [0, 1, 2]
    assert observed == [(3, 0.0)]
    assert b.next_batch(block=False) is None  # one left, not due yet
    clock.t += 0.049
    assert b.next_batch(block=False) is None
    clock.t += 0.002  # the oldest waited max_wait: partial batch flushes
    batch = b.next_batch(block=False)
    assert ns(batch) == [3]
    assert observed[-1][0] == 1 and observed[-1][1] >= 0.05


def test_batches_mix_jobs_but_not_keys():
    clock = Clock()
    b, _, _, _ = make(max_batch=4, clock=clock)
    b.submit([Item("a", 0), Item("a", 1)])
    b.submit([Item("b", 2, ("other",))])
    b.submit([Item("c", 3), Item("b", 4)])
    batch = b.next_batch(block=False)
    # three jobs, one batch; the other key waits for its own batch
    assert [(i.job_id, i.n) for i, _ in batch] == [("a", 0), ("a", 1), ("c", 3), ("b", 4)]
    clock.t += 1
    assert ns(b.next_batch(block=False)) == [2]


def test_cancel_drops_only_that_job():
    clock = Clock()
    b, _, dropped, _ = make(max_batch=8, clock=clock)
    b.submit([Item("a", 0), Item("b", 1), Item("a", 2), Item("b", 3)])
    assert b.cancel("a") == 2
    assert sorted(i.n for i in dropped) == [0, 2]
    assert b.pending("a") == 0 and b.pending("b") == 2
    clock.t += 1
    assert ns(b.next_batch(block=False)) == [1, 3]


def test_scheduler_thread_timeout_and_results():
    b, done, _, _ = make(max_batch=16, max_wait_s=0.05)
    b.start()
    try:
        t0 = time.monotonic()
        b.submit([Item("a", 1), Item("b", 2)])
        deadline = time.monotonic() + 5
        while not done and time.monotonic() < deadline:
            time.sleep(0.005)
        assert time.monotonic() - t0 >= 0.05  # waited for more work, then flushed the partial batch
        items, results = done[0]
        assert [i.n for i in items] == [1, 2] and results == [10, 20]
    finally:
        b.stop()


def test_cancel_while_running_stops_within_one_batch():
    started, release = threading.Event(), threading.Event()
    ran = []

    def run(items):
        ran.append([i.n for i in items])
        started.set()
        release.wait(5)
        return [0] * len(items)

    b, done, dropped, _ = make(max_batch=2, max_wait_s=0.0, run=run)
    b.submit([Item("a", i) for i in range(10)])
    b.start()
    try:
        assert started.wait(5)
        assert b.cancel("a") == 8  # everything but the running batch
        release.set()
        deadline = time.monotonic() + 5
        while len(done) < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.1)
        assert ran == [[0, 1]] and len(dropped) == 8
    finally:
        b.stop()


def test_failing_batch_reports_error_and_scheduler_survives():
    calls = []

    def run(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [1] * len(items)

    b, done, _, _ = make(max_batch=1, max_wait_s=0.0, run=run)
    b.start()
    try:
        b.submit([Item("a", 0), Item("b", 1)])
        deadline = time.monotonic() + 5
        while len(done) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert isinstance(done[0][1], RuntimeError) and done[1][1] == [1]
    finally:
        b.stop()


def test_outputs_go_to_each_submitters_reply_queue():
    b = DynamicBatcher(8, 0.0, lambda items: [i.n * 10 for i in items])
    a, c = Reply(), Reply()
    b.submit([Item("a", 1), Item("a", 2)], a)
    b.submit([Item("c", 3)], c)
    b.run_once(b.next_batch(block=False))  # one batch, both jobs
    assert [([i.n for i in items], out) for items, out in a.done] == [([1, 2], [10, 20])]
    assert [([i.n for i in items], out) for items, out in c.done] == [([3], [30])]
    b.submit([Item("a", 4), Item("c", 5)], a)
    assert b.cancel("a") == 1 and [i.n for i in a.dropped] == [4] and not c.dropped
