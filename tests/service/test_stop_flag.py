"""StopFlag: a signal handler can set it at any point of a wait on it (threading.Event deadlocks there)."""

from __future__ import annotations

import signal
import threading
import time

from service import stop_flag
from service.stop_flag import StopFlag


def test_a_signal_handler_sets_the_flag_in_the_middle_of_its_wait(monkeypatch):
    """The handler runs inside wait() itself, on the waiting thread: with a lock held there (as
    Event.wait holds its Condition's lock around the sleep), set() would block for ever."""
    flag = StopFlag()
    real_sleep = stop_flag._sleep
    calls = []

    def sleep_then_signal(s):
        calls.append(s)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGUSR1)  # delivered now, on this thread, mid-wait
        real_sleep(s)

    old = signal.signal(signal.SIGUSR1, lambda signum, frame: flag.set())
    monkeypatch.setattr(stop_flag, "_sleep", sleep_then_signal)
    try:
        t0 = time.monotonic()
        assert flag.wait(10.0) is True
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert len(calls) == 3 and time.monotonic() - t0 < 1.0


def test_wait_times_out_unset_and_sees_another_threads_set():
    flag = StopFlag()
    t0 = time.monotonic()
    assert flag.wait(0.12) is False and not flag.is_set()
    assert 0.12 <= time.monotonic() - t0 < 1.0
    threading.Timer(0.1, flag.set).start()
    t0 = time.monotonic()
    assert flag.wait(10.0) is True and flag.is_set()
    assert time.monotonic() - t0 < 0.1 + 5 * stop_flag.POLL_S + 0.5
