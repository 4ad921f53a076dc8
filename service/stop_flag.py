"""A stop flag that a signal handler may set.

`threading.Event.set()` takes the Event's lock. A Python signal handler runs in the main thread between
bytecodes, so when the signal lands while the main thread is inside `Event.wait()` with that lock held
(entering or leaving the wait), `set()` blocks on a lock its own thread holds: the process hangs for
ever. That is how `vidpose serve` once ignored a SIGTERM. This flag is a plain attribute (atomic under
the GIL) and its wait polls with `time.sleep`, which a signal interrupts without any lock held.
"""

from __future__ import annotations

import time

_sleep = time.sleep  # the module's own name for it, so a test can step into a wait
POLL_S = 0.05  # how late a wait notices the flag (a signal's handler runs at once, but sleep resumes)


class StopFlag:
    """Event-like (`set`, `is_set`, `wait`) with no lock; safe to set from a signal handler."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until set or `timeout` seconds pass; returns whether it is set."""
        end = time.monotonic() + timeout
        while not self._set:
            left = end - time.monotonic()
            if left <= 0:
                break
            _sleep(min(left, POLL_S))
        return self._set
