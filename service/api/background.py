"""The API process's background loops, one owner each: the janitor of the blob store
(service/api/janitor.py) and the check of jobs stranded on an unserved model (service/api/stranded.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from starlette.concurrency import run_in_threadpool

from service.api import janitor, stranded

log = logging.getLogger("vidpose.api")


async def every(period: float, work: Callable[[], object], name: str) -> None:
    """Run the blocking `work` in a thread, then sleep `period` s, until cancelled. A failure (Redis
    down, a file system hiccup) is logged and tried again next period."""
    while True:
        try:
            await run_in_threadpool(work)
        except Exception:
            log.exception("%s failed", name)
        await asyncio.sleep(period)


@asynccontextmanager
async def background_lifespan(app):
    """The app's lifespan: the loops run while the API serves and are cancelled at shutdown."""
    settings, queue = app.state.settings, app.state.queue
    loops = [(janitor.interval(settings), janitor.Janitor(settings, queue).sweep, "janitor sweep"),
             (stranded.period(settings), stranded.StrandedJobs(settings, queue).check, "stranded-jobs check")]
    tasks = [asyncio.create_task(every(*loop)) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
