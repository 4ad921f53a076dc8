"""HTTP endpoints of jobs: status, result, cancel, and the routers (POST /estimate: submit.py; models,
detectors and ops: info_routes.py).

Endpoints that only talk to Redis are plain `def`s: FastAPI runs them in its
threadpool, so the synchronous redis-py client never blocks the event loop.
POST /estimate is `async` because it consumes the request stream itself.
"""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from service import contract, metrics
from service.api.auth import authenticate
from service.api.errors import ApiError
from service.api.formats import FormatError, to_coco, to_posetrack
from service.api.info_routes import app_state as _state
from service.api.info_routes import base_path as _base
from service.api.info_routes import list_detectors, list_models
from service.api.schemas import (
    DetectorList,
    ErrorBody,
    JobAccepted,
    JobView,
    ModelList,
    ResultPage,
)
from service.api.submit import estimate
from service.api.submit import model_info as _model_info
from service.api.upload_schema import upload_body
from service.contract import ModelInfo
from service.queue import ACTIVE, JobQueue
from service.settings import Settings

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 415, 422, 429, 503)}


# ---------------------------------------------------------------- helpers
def _load_job(queue: JobQueue, job_id: str, owner: str) -> dict:
    """The caller's job, or 404 (unknown, expired, or another key's job: indistinguishable)."""
    job = queue.get_job(job_id, with_options=False) if JOB_ID.match(job_id) else None
    if job is None or job["owner"] != owner:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown, expired, or not yours)")
    return job


def _job_view(job: dict, model_info: ModelInfo) -> dict:
    total, done = job["frames_total"], job["frames_done"]
    if job["status"] == "succeeded":
        progress = 1.0
    else:
        progress = min(1.0, done / total) if total > 0 else 0.0
    error = None
    if job["error_code"] and job["status"] in ("failed", "cancelled"):
        error = {"code": job["error_code"], "message": job["error_message"] or job["error_code"]}
    return {
        "job_id": job["job_id"], "status": job["status"], "progress": round(progress, 4),
        "frames_total": total, "frames_done": done,
        "frames_detected": total if job["status"] == "succeeded" else min(job["frames_detected"], total),
        "created_at": job["created_at"],
        "started_at": job["started_at"], "finished_at": job["finished_at"],
        "model": {"name": job["model"], "version": model_info.version},
        "error": error,
    }


# ---------------------------------------------------------------- jobs
def get_job(job_id: str, request: Request, owner: str = Depends(authenticate)):
    _, queue = _state(request)
    job = _load_job(queue, job_id, owner)
    return _job_view(job, _model_info(queue, job["model"]))


def require_succeeded(job: dict, request: Request) -> None:
    """409 unless the job succeeded (its result and overlay exist only then)."""
    status = job["status"]
    if status in ACTIVE:
        done = f"{job['frames_done']}/{job['frames_total']}"
        raise ApiError(409, "job_not_finished", f"job is {status} ({done} frames); "
                       f"poll GET {_base(request)}/jobs/{job['job_id']} until it succeeds")
    if status != "succeeded":
        reason = f": {job['error_message']}" if job["error_message"] else ""
        raise ApiError(409, f"job_{status}", f"job {status}{reason}; it has no result")


def result_document(queue: JobQueue, job: dict, start_frame: int, limit: int) -> dict:
    """One page of a succeeded job's result in the native JSON shape (ResultPage)."""
    job_id = job["job_id"]
    frames = queue.get_frames(job_id, start_frame, limit)
    end = start_frame + limit
    info = _model_info(queue, job["model"])
    video = job["video"] or {}
    return contract.result_page(
        job_id, contract.ModelRef(name=job["model"], version=info.version),
        contract.VideoInfo(width=int(video.get("width", 0)), height=int(video.get("height", 0)),
                           fps=float(video.get("fps", 0.0)),
                           frames=int(video.get("frames", job["frames_total"]))),
        info, frames, end if end < job["frames_total"] else None)


def get_result(job_id: str, request: Request, owner: str = Depends(authenticate),
               start_frame: int = Query(0, ge=0, description="First frame index of the page."),
               limit: int | None = Query(None, ge=1, description="Frames per page (capped at the server's "
                                         "result_page_limit)."),
               format: Literal["json", "posetrack", "coco"] = Query(
                   "json", description="json (default), posetrack (PoseTrack18 JSON) or coco (results list). "
                   "posetrack/coco pages announce the next page in X-Next-Start-Frame and Link headers.")):
    settings, queue = _state(request)
    job = _load_job(queue, job_id, owner)
    require_succeeded(job, request)
    limit = min(limit or settings.result_page_limit, settings.result_page_limit)
    result = result_document(queue, job, start_frame, limit)
    next_start = result["next_start_frame"]
    if format == "json":
        return JSONResponse(result)
    try:
        body = to_posetrack(result) if format == "posetrack" else to_coco(result)
    except FormatError as e:
        raise ApiError(422, "unsupported_format", str(e)) from None
    headers = {}
    if next_start is not None:
        headers["X-Next-Start-Frame"] = str(next_start)
        url = request.url.include_query_params(start_frame=next_start)
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(body, headers=headers)


def cancel_job(job_id: str, request: Request, owner: str = Depends(authenticate)):
    _, queue = _state(request)
    _load_job(queue, job_id, owner)
    changed, before = queue.cancel_job(job_id)
    if before is None:  # expired between the two calls
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")
    if not changed:
        raise ApiError(409, "job_finished",
                       f"job already {before}; only queued or running jobs can be cancelled")
    metrics.API_JOBS_FINISHED.labels("cancelled").inc()
    job = queue.get_job(job_id, with_options=False)
    return _job_view(job, _model_info(queue, job["model"]))


# ---------------------------------------------------------------- routers
def jobs_router(settings: Settings, prefix: str = "") -> APIRouter:
    """The jobs API under `prefix` ("" and "/v1"). Built per prefix so each route's template
    carries its full path (metrics labels, OpenAPI); the upload's schema states `settings`' caps."""
    r = APIRouter(prefix=prefix, tags=["jobs"])
    r.add_api_route("/estimate", estimate, methods=["POST"], status_code=202, response_model=JobAccepted,
                    responses=_ERRORS, openapi_extra=upload_body(settings),
                    summary="Submit a clip for pose estimation")
    r.add_api_route("/jobs/{job_id}", get_job, methods=["GET"], response_model=JobView, responses=_ERRORS,
                    summary="Job status and progress")
    r.add_api_route("/jobs/{job_id}/result", get_result, methods=["GET"],
                    responses={200: {"model": ResultPage}, **_ERRORS},
                    summary="Tracked poses of a finished job, paged by frame")
    r.add_api_route("/jobs/{job_id}", cancel_job, methods=["DELETE"], response_model=JobView,
                    responses=_ERRORS, summary="Cancel a queued or running job")
    r.add_api_route("/models", list_models, methods=["GET"], response_model=ModelList, responses=_ERRORS,
                    summary="Models the workers serve (or, before any registered, the checkpoint files)")
    r.add_api_route("/detectors", list_detectors, methods=["GET"], response_model=DetectorList,
                    responses=_ERRORS,
                    summary="Person detectors (the registry) and which the live workers can run")
    return r
