"""POST /estimate: stream the upload to the blob store, validate the options off the event loop, probe
the clip, queue the job (Idempotency-Key aware).

The endpoint is `async` because it consumes the request stream itself (service/api/upload.py); every
call that can take a while (Redis, OpenCV, the options part) goes through the threadpool or, for a
large options part, a process (service/api/options.py).
"""

from __future__ import annotations

import re

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service import metrics
from service.api.admission import check_detector, check_served, known_models, too_busy
from service.api.auth import authenticate
from service.api.errors import ApiError
from service.api.info_routes import app_state, base_path
from service.api.options import OptionLimits, check_boxes_fit, parse_options_async
from service.api.probe import InvalidVideo, probe_video
from service.api.upload import MultipartUpload
from service.contract import ModelInfo
from service.queue import JobQueue

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
# Multipart framing around the two parts: generous, only used for the early Content-Length check.
_FRAMING_BYTES = 64 * 1024


def accepted(request: Request, job_id: str, status: str, replayed: bool = False) -> JSONResponse:
    base = base_path(request)
    body = {"job_id": job_id, "status": status, "status_url": f"{base}/jobs/{job_id}",
            "result_url": f"{base}/jobs/{job_id}/result"}
    headers = {"Location": body["status_url"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


def model_info(queue: JobQueue, name: str) -> ModelInfo:
    """What workers registered for the model (a bare ModelInfo when none has)."""
    return ModelInfo.model_validate({**queue.list_models().get(name, {}), "name": name})


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


async def _replay(request: Request, queue: JobQueue, job_id: str, key: str, fingerprint: str) -> JSONResponse:
    """202 with the job an earlier request created under the same Idempotency-Key, when this request's
    body is the same (its fingerprint: video bytes + options); 422 `idempotency_key_reused` otherwise,
    as draft-ietf-httpapi-idempotency-key-header says. A job stored without a fingerprint (before
    this check existed) is replayed."""
    job = await run_in_threadpool(queue.get_job, job_id, False)
    if job and job.get("fingerprint") and job["fingerprint"] != fingerprint:
        raise ApiError(422, "idempotency_key_reused", f"Idempotency-Key {key!r} was already used for "
                       f"another request (a different video or options: job {job_id}); send a new key "
                       "for a new request")
    return accepted(request, job_id, job["status"] if job else "queued", replayed=True)


async def estimate(request: Request, owner: str = Depends(authenticate),
                   idempotency_key: str | None = Header(
                       None, alias="Idempotency-Key", description="1-200 printable ASCII characters, no "
                       "spaces: a retry with the same key and body gets the same job",
                       json_schema_extra={"pattern": IDEMPOTENCY_KEY.pattern})):
    settings, queue = app_state(request)
    stream = request.stream()
    drain_limit = settings.max_upload_bytes + settings.max_options_bytes
    upload: MultipartUpload | None = None
    refused_unread = False  # rejected on Content-Length alone: don't read that body at all
    try:
        if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
            raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 printable ASCII "
                           "characters without spaces")
        upload = MultipartUpload(request.headers.get("content-type"), request.app.state.blobs,
                                 settings.max_options_bytes, hash_video=bool(idempotency_key))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > drain_limit + _FRAMING_BYTES:
            refused_unread = True
            raise ApiError(413, "upload_too_large", f"the request ({declared} bytes) exceeds the upload "
                           f"limit of {settings.max_upload_bytes} bytes (VIDPOSE_MAX_UPLOAD_BYTES)")
        if idempotency_key:
            existing = await run_in_threadpool(queue.find_idempotent, owner, idempotency_key)
            if existing:  # the body decides: the same request again (replay) or the key reused (422)
                form = await upload.parse(stream)
                upload.cleanup()  # no second upload stored
                return await _replay(request, queue, existing, idempotency_key, form.fingerprint())
        backlog = await run_in_threadpool(queue.backlog_frames)
        if backlog >= settings.max_queued_frames:
            raise too_busy(settings, backlog)

        form = await upload.parse(stream)
        if form.blob is None:
            raise ApiError(400, "missing_video", "no 'video' file part in the form")
        parsed = await parse_options_async(form.fields.get("options"), OptionLimits.of(settings))
        options = parsed.options
        model = options.model or settings.default_model
        if model not in await run_in_threadpool(known_models, settings, queue):
            raise ApiError(422, "unknown_model",
                           f"unknown model {model!r}; GET /models lists the served ones")
        await run_in_threadpool(check_served, queue, model)
        info = await run_in_threadpool(model_info, queue, model)
        served_window = info.window
        if options.window is not None and served_window is not None and options.window != served_window:
            raise ApiError(422, "invalid_options", f"options.window={options.window}, but model {model!r} "
                           f"was trained with window {served_window}; omit it or pass {served_window}")
        if options.detector is not None:
            await run_in_threadpool(check_detector, queue, settings, model, options.detector)
        try:
            video = await run_in_threadpool(probe_video, form.blob, settings.max_frames)
        except InvalidVideo as e:
            raise ApiError(422, "invalid_video", f"{form.filename}: {e}") from None
        frames_total = min(video.frames, options.max_frames or video.frames)
        if frames_total > settings.max_frames:
            raise ApiError(422, "too_many_frames", f"the clip has {video.frames} frames; the limit per job "
                           f"is {settings.max_frames} (set options.max_frames to process only the start)")
        check_boxes_fit(parsed.boxes, video.width, video.height, video.frames)
        backlog = await run_in_threadpool(queue.backlog_frames)
        if backlog > 0 and backlog + frames_total > settings.max_queued_frames:
            raise too_busy(settings, backlog)
        job_id, created = await run_in_threadpool(
            queue.submit, owner, model, str(form.blob), parsed.stored, frames_total,
            {**video.to_dict(), "frames": frames_total}, idempotency_key,
            form.fingerprint() if idempotency_key else "")
        if not created:  # an idempotent twin won the race: keep its blob, drop ours
            upload.cleanup()
            return await _replay(request, queue, job_id, idempotency_key, form.fingerprint())
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
    metrics.JOBS_SUBMITTED.labels(model).inc()
    metrics.UPLOAD_BYTES.observe(form.size)
    return accepted(request, job_id, "queued")
