"""The API process's background loops, one owner each: the janitor of the blob store
(service/api/janitor.py) and the check of jobs stranded on an unserved model (service/api/stranded.py)."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager

from service.api.janitor import Janitor, run_janitor
from service.api.stranded import StrandedJobs, run_stranded


@asynccontextmanager
async def background_lifespan(app):
    """The app's lifespan: the loops run while the API serves and are cancelled at shutdown."""
    settings, queue = app.state.settings, app.state.queue
    tasks = [asyncio.create_task(run_janitor(Janitor(settings, queue))),
             asyncio.create_task(run_stranded(StrandedJobs(settings, queue)))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
