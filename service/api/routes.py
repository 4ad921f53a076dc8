"""HTTP endpoints of jobs: submit, status, result, cancel (models, detectors and ops: info_routes.py).

Endpoints that only talk to Redis are plain `def`s: FastAPI runs them in its
threadpool, so the synchronous redis-py client never blocks the event loop.
POST /estimate is `async` because it consumes the request stream itself.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service import contract, detectors, metrics
from service.api import catalog
from service.api.auth import authenticate
from service.api.errors import ApiError, validation_message
from service.api.formats import FormatError, to_coco, to_posetrack
from service.api.info_routes import app_state as _state
from service.api.info_routes import list_detectors, list_models
from service.api.probe import InvalidVideo, probe_video
from service.api.schemas import (
    DetectorList,
    ErrorBody,
    JobAccepted,
    JobView,
    ModelList,
    ResultPage,
)
from service.api.upload import MultipartUpload
from service.contract import JobOptions, ModelInfo
from service.queue import ACTIVE, JobQueue
from service.settings import Settings

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
# Multipart framing around the two parts: generous, only used for the early Content-Length check.
_FRAMING_BYTES = 64 * 1024

_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 415, 422, 429, 503)}



# ---------------------------------------------------------------- helpers
def _base(request: Request) -> str:
    """URL prefix the client used (root_path behind a proxy, plus /v1 when called there)."""
    root = request.scope.get("root_path", "") or ""
    path = request.url.path
    return root + ("/v1" if path[len(root):].startswith("/v1/") else "")


def _load_job(queue: JobQueue, job_id: str, owner: str) -> dict:
    """The caller's job, or 404 (unknown, expired, or another key's job: indistinguishable)."""
    job = queue.get_job(job_id) if JOB_ID.match(job_id) else None
    if job is None or job["owner"] != owner:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown, expired, or not yours)")
    return job


def _model_info(queue: JobQueue, name: str) -> ModelInfo:
    """What workers registered for the model (a bare ModelInfo when none has)."""
    return ModelInfo.model_validate({**queue.list_models().get(name, {}), "name": name})


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
        "frames_total": total, "frames_done": done, "created_at": job["created_at"],
        "started_at": job["started_at"], "finished_at": job["finished_at"],
        "model": {"name": job["model"], "version": model_info.version},
        "error": error,
    }


def _accepted(request: Request, job_id: str, status: str, replayed: bool = False) -> JSONResponse:
    base = _base(request)
    body = {"job_id": job_id, "status": status, "status_url": f"{base}/jobs/{job_id}",
            "result_url": f"{base}/jobs/{job_id}/result"}
    headers = {"Location": body["status_url"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


def _known_models(settings: Settings, queue: JobQueue) -> set[str]:
    names = set(settings.models) | {settings.default_model} | set(queue.list_models())
    if settings.models_dir.is_dir():
        names |= {p.stem for p in settings.models_dir.glob("*.safetensors")}
    return names


def _parse_options(raw: str | None) -> JobOptions:
    if raw is None or not raw.strip():
        return JobOptions()
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ApiError(400, "invalid_options", f"options is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_options", "options must be a JSON object")
    try:
        return JobOptions.model_validate(data)
    except ValidationError as e:
        raise ApiError(422, "invalid_options", "options: " + validation_message(e.errors())) from None


async def _drain(stream, limit: int) -> None:
    """Read and drop the rest of a rejected body (up to `limit` bytes) so the client reads our error
    instead of a reset connection; past the limit we stop and the server closes the connection."""
    seen = 0
    try:
        async for chunk in stream:
            seen += len(chunk)
            if seen > limit:
                break
    except Exception:  # client went away: nothing to tell it
        pass


def _check_detector(queue: JobQueue, settings: Settings, model: str, detector: str) -> None:
    """422 when live workers serve `model` but none of them can run `detector` (e.g. onnx without a file).
    With no live worker the job is queued; a worker without the detector fails it (invalid_options)."""
    if detector == detectors.PROVIDED:
        return
    workers = [w for w in queue.live_workers() if model in catalog.worker_models(w)]
    known = [w for w in workers if isinstance(w.get("detectors"), list)]
    if known and not any(detector in w["detectors"] for w in known):
        have = sorted({d for w in known for d in w["detectors"]})
        need = detectors.spec(detector).unavailable(settings.model_copy(update={"detector_model": None}))
        raise ApiError(422, "detector_unavailable", f"no worker serving {model!r} can run detector "
                       f"{detector!r} (available: {', '.join(have)})" + (f"; it {need}" if need else ""))


def _check_served(queue: JobQueue, model: str) -> None:
    """422 `model_not_served` when live workers are known, all of them say which models they serve, and
    none serves `model` (such a job would wait forever). With no live worker the job is queued as before."""
    workers = queue.live_workers()
    lists = [catalog.worker_models(w) for w in workers]
    if not workers or not all(lists):  # no worker, or one that has not said what it serves
        return
    served = sorted({m for names in lists for m in names})
    if model not in served:
        raise ApiError(422, "model_not_served", f"no live worker serves model {model!r}; served: "
                       f"{', '.join(served)} (GET /models)")


def _too_busy(settings: Settings, backlog: int) -> ApiError:
    return ApiError(429, "too_many_requests",
                    f"the queue is full ({backlog} frames waiting, limit {settings.max_queued_frames}); "
                    f"retry in {settings.retry_after_s} s", {"Retry-After": str(settings.retry_after_s)})


# ---------------------------------------------------------------- jobs
def _inline_schema(model) -> dict:
    """The JSON schema of a pydantic model with its $defs inlined (it sits inside a form field)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["video"],
    "properties": {
        "video": {"type": "string", "format": "binary",
                  "description": "The clip: .mp4, .avi, .mov, .webm or .mkv."},
        "options": {"type": "string", "contentMediaType": "application/json",
                    "contentSchema": _inline_schema(JobOptions),
                    "description": "Optional JSON object (the JobOptions of service/contract.py):\n\n"
                    + "\n".join(f"- `{k}`: {f.description}" for k, f in JobOptions.model_fields.items())},
    }}}}}}


async def estimate(request: Request, owner: str = Depends(authenticate),
                   idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    settings, queue = _state(request)
    stream = request.stream()
    drain_limit = settings.max_upload_bytes + settings.max_options_bytes
    upload: MultipartUpload | None = None
    refused_unread = False  # rejected on Content-Length alone: don't read that body at all
    try:
        if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
            raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 printable ASCII "
                           "characters without spaces")
        upload = MultipartUpload(request.headers.get("content-type"), request.app.state.blobs,
                                 settings.max_options_bytes)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > drain_limit + _FRAMING_BYTES:
            refused_unread = True
            raise ApiError(413, "upload_too_large", f"the request ({declared} bytes) exceeds the upload "
                           f"limit of {settings.max_upload_bytes} bytes (VIDPOSE_MAX_UPLOAD_BYTES)")
        if idempotency_key:
            existing = await run_in_threadpool(queue.find_idempotent, owner, idempotency_key)
            if existing:  # replay: same job, no second upload stored
                await _drain(stream, drain_limit)
                job = await run_in_threadpool(queue.get_job, existing)
                return _accepted(request, existing, job["status"] if job else "queued", replayed=True)
        backlog = await run_in_threadpool(queue.backlog_frames)
        if backlog >= settings.max_queued_frames:
            raise _too_busy(settings, backlog)

        form = await upload.parse(stream)
        if form.blob is None:
            raise ApiError(400, "missing_video", "no 'video' file part in the form")
        options = _parse_options(form.fields.get("options"))
        model = options.model or settings.default_model
        if model not in await run_in_threadpool(_known_models, settings, queue):
            raise ApiError(422, "unknown_model",
                           f"unknown model {model!r}; GET /models lists the served ones")
        await run_in_threadpool(_check_served, queue, model)
        info = await run_in_threadpool(_model_info, queue, model)
        served_window = info.window
        if options.window is not None and served_window is not None and options.window != served_window:
            raise ApiError(422, "invalid_options", f"options.window={options.window}, but model {model!r} "
                           f"was trained with window {served_window}; omit it or pass {served_window}")
        if options.detector is not None:
            await run_in_threadpool(_check_detector, queue, settings, model, options.detector)
        try:
            video = await run_in_threadpool(probe_video, form.blob, settings.max_frames)
        except InvalidVideo as e:
            raise ApiError(422, "invalid_video", f"{form.filename}: {e}") from None
        frames_total = min(video.frames, options.max_frames or video.frames)
        if frames_total > settings.max_frames:
            raise ApiError(422, "too_many_frames", f"the clip has {video.frames} frames; the limit per job "
                           f"is {settings.max_frames} (set options.max_frames to process only the start)")
        backlog = await run_in_threadpool(queue.backlog_frames)
        if backlog > 0 and backlog + frames_total > settings.max_queued_frames:
            raise _too_busy(settings, backlog)
        job_id, created = await run_in_threadpool(
            queue.submit, owner, model, str(form.blob), options.stored(), frames_total,
            {**video.to_dict(), "frames": frames_total}, idempotency_key)
    except ApiError as e:
        metrics.JOBS_REJECTED.labels(e.code).inc()
        if upload is not None:
            upload.cleanup()
        if not refused_unread:
            await _drain(stream, drain_limit)
        raise
    except BaseException:
        if upload is not None:
            upload.cleanup()
        raise
    if not created:  # an idempotent twin won the race: keep its blob, drop ours
        upload.cleanup()
        job = await run_in_threadpool(queue.get_job, job_id)
        return _accepted(request, job_id, job["status"] if job else "queued", replayed=True)
    metrics.JOBS_SUBMITTED.labels(model).inc()
    metrics.UPLOAD_BYTES.observe(form.size)
    return _accepted(request, job_id, "queued")


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
    job = queue.get_job(job_id)
    return _job_view(job, _model_info(queue, job["model"]))


# ---------------------------------------------------------------- routers
def jobs_router(prefix: str = "") -> APIRouter:
    """The jobs API under `prefix` ("" and "/v1"). Built per prefix so each route's template
    carries its full path (metrics labels, OpenAPI)."""
    r = APIRouter(prefix=prefix, tags=["jobs"])
    r.add_api_route("/estimate", estimate, methods=["POST"], status_code=202, response_model=JobAccepted,
                    responses=_ERRORS, openapi_extra=_UPLOAD_BODY,
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
