"""GET /jobs/{id}/overlay.mp4: the job's skeletons drawn on its clip, H.264, rendered once and cached.

The first request renders `blob_dir/overlays/<job_id>.mp4` (temp file + atomic rename, so no
reader ever sees half a file); later requests, and concurrent ones that waited for that render,
are served the file (FileResponse: HTTP Range works, so browsers can seek). Rendering runs in a
worker thread, never on the event loop, and at most settings.overlay_max_renders run at once.
Overlays, like blobs, outlive their job's Redis record until the API's janitor deletes them (janitor.py).
A job that expired answers 404 before its cached overlay is ever looked at.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from service import metrics
from service.api.auth import authenticate
from service.api.errors import ApiError
from service.api.routes import _ERRORS, _load_job, _state, require_succeeded, result_document
from service.api.schemas import ErrorBody
from service.blobs import BlobStore
from service.queue import JobQueue
from service.settings import Settings

log = logging.getLogger("vidpose.api")

OVERLAY_DIR = "overlays"  # under blob_dir, shared by every API replica


class _Renders:
    """Per-app render coordination: one lock per job being rendered, and the global render slots."""

    def __init__(self, max_renders: int):
        self.slots = asyncio.Semaphore(max_renders)
        self.locks: dict[str, tuple[asyncio.Lock, int]] = {}  # job_id -> (lock, requests using it)

    def acquire(self, job_id: str) -> asyncio.Lock:
        lock, users = self.locks.get(job_id, (None, 0))
        lock = lock or asyncio.Lock()
        self.locks[job_id] = (lock, users + 1)
        return lock

    def release(self, job_id: str) -> None:
        lock, users = self.locks[job_id]
        if users <= 1:
            del self.locks[job_id]
        else:
            self.locks[job_id] = (lock, users - 1)


def _renders(app: FastAPI, settings: Settings) -> _Renders:
    # Created on the event loop at first use (no await in between: no race); one per app.
    renders = getattr(app.state, "overlay_renders", None)
    if renders is None:
        renders = app.state.overlay_renders = _Renders(settings.overlay_max_renders)
    return renders


def overlay_path(settings: Settings, job_id: str) -> Path:
    return Path(settings.blob_dir).resolve() / OVERLAY_DIR / f"{job_id}.mp4"


def _full_result(queue: JobQueue, job: dict, page: int) -> dict:
    """Every frame of the job's result, read a page at a time."""
    total = job["frames_total"]
    result = result_document(queue, job, 0, page)
    for start in range(page, total, page):
        result["frames"] += result_document(queue, job, start, page)["frames"]
    result["next_start_frame"] = None
    return result


def _render(settings: Settings, queue: JobQueue, blobs: BlobStore, job: dict, path: Path) -> None:
    """Render the job's overlay into `path` (blocking: run in a thread)."""
    from service.render.overlay import RenderError, render_overlay  # OpenCV + PyAV: loaded on first use

    job_id = job["job_id"]
    try:
        clip = blobs.resolve(job["blob"])
    except ValueError:
        clip = None
    if clip is None or not clip.is_file():
        raise ApiError(410, "video_gone", f"the uploaded clip of job {job_id} is no longer stored; "
                       "its overlay cannot be rendered (the JSON result is still available)")
    result = _full_result(queue, job, settings.result_page_limit)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{job_id}.{secrets.token_hex(4)}.mp4.part"
    try:
        # Only the frames the job processed (options.max_frames may have trimmed the clip).
        with metrics.OVERLAY_RENDER_SECONDS.time():
            render_overlay(result, clip, tmp, min_score=settings.overlay_min_score,
                           max_frames=job["frames_total"])
        os.replace(tmp, path)
        metrics.OVERLAY_RENDERS.labels("ok").inc()
    except RenderError as e:
        metrics.OVERLAY_RENDERS.labels("failed").inc()
        log.warning("overlay of job %s failed: %s", job_id, e)
        raise ApiError(500, "overlay_failed", f"the overlay video could not be rendered: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)


async def get_overlay(job_id: str, request: Request, owner: str = Depends(authenticate)):
    settings, queue = _state(request)
    job = await run_in_threadpool(_load_job, queue, job_id, owner)
    require_succeeded(job, request)
    path = overlay_path(settings, job_id)
    if not path.is_file():
        renders = _renders(request.app, settings)
        lock = renders.acquire(job_id)
        try:
            async with lock:  # concurrent requests for this job wait for one render
                if not path.is_file():
                    async with renders.slots:
                        await run_in_threadpool(_render, settings, queue, request.app.state.blobs, job, path)
        finally:
            renders.release(job_id)
    # private: behind the caller's key; the file never changes once rendered.
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"})


def overlay_router(prefix: str = "") -> APIRouter:
    """GET {prefix}/jobs/{job_id}/overlay.mp4 (mounted at "" and "/v1", like the jobs API)."""
    r = APIRouter(prefix=prefix, tags=["jobs"])
    r.add_api_route("/jobs/{job_id}/overlay.mp4", get_overlay, methods=["GET"], response_class=FileResponse,
                    responses={200: {"content": {"video/mp4": {}},
                                     "description": "H.264 mp4 of the clip with the tracked skeletons "
                                     "(one colour per track; keypoints under overlay_min_score hidden). "
                                     "Supports Range requests."},
                               **_ERRORS, 410: {"model": ErrorBody}, 500: {"model": ErrorBody}},
                    summary="Skeleton overlay video of a finished job")
    return r
