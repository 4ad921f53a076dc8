"""HTTP endpoints that describe the service rather than a job: models, detectors, and ops (health,
readiness, metrics)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request, Response

from service import detectors, metrics
from service.api import catalog
from service.api.auth import authenticate
from service.api.errors import ApiError
from service.api.schemas import ErrorBody
from service.contract import ModelInfo
from service.queue import JobQueue
from service.settings import Settings

log = logging.getLogger("vidpose.api")


def app_state(request: Request) -> tuple[Settings, JobQueue]:
    return request.app.state.settings, request.app.state.queue


def base_path(request: Request) -> str:
    """URL prefix the client used (root_path behind a proxy, plus /v1 when called there)."""
    root = request.scope.get("root_path", "") or ""
    path = request.url.path
    return root + ("/v1" if path[len(root):].startswith("/v1/") else "")


def list_models(request: Request, owner: str = Depends(authenticate)):
    settings, queue = app_state(request)
    registered = queue.list_models()
    served: dict[str, list[dict]] = {}
    for worker in queue.live_workers():
        for name in catalog.worker_models(worker):
            served.setdefault(name, []).append(worker)
    entries: dict[str, dict] = {}
    if registered:  # what workers published (contract.ModelInfo)
        sources = [("workers", ModelInfo.model_validate({**info, "name": name}))
                   for name, info in registered.items()]
    else:  # no worker registered yet: what would be served, from the checkpoint files (the same type)
        sources = [("models_dir", ModelInfo.model_validate(info))
                   for info in catalog.scan_models_dir(settings.models_dir)]
    for source, info in sources:
        entries[info.name] = {"name": info.name, "version": info.version, "source": source,
                              "config": catalog.config_summary(info.model_dump()), "window": info.window,
                              "keypoint_names": info.keypoint_names, "error": info.error}
    for name in served:
        entries.setdefault(name, {"name": name, "version": None, "source": "workers", "config": {}})
    models = []
    for name in sorted(entries):
        workers = served.get(name, [])
        devices = sorted({str(w.get("device")) for w in workers if w.get("device")})
        models.append({**entries[name], "default": name == settings.default_model, "loaded": bool(workers),
                       "workers": len(workers), "devices": devices,
                       "card": catalog.model_card(settings.models_dir, name)})
    return {"default_model": settings.default_model, "models": models}


def list_detectors(request: Request, owner: str = Depends(authenticate)):
    """The detector registry, with what the live workers can run (the web page's picker)."""
    settings, queue = app_state(request)
    workers = [w for w in queue.live_workers() if isinstance(w.get("detectors"), list)]
    defaults = [w["default_detector"] for w in workers if w.get("default_detector")]
    default = max(set(defaults), key=defaults.count) if defaults else detectors.resolve(settings)[0]
    rows = []
    for row in detectors.catalog(settings):
        n = sum(row["name"] in w["detectors"] for w in workers)
        available = n > 0 if workers else detectors.unavailable(row["name"], settings) is None
        rows.append({**row, "available": available, "workers": n})
    return {"default_detector": default, "detectors": rows}


# ---------------------------------------------------------------- ops (no auth)
def healthz():
    return {"status": "ok"}


def readyz(request: Request):
    _, queue = app_state(request)
    try:
        queue.ping()
        workers = queue.live_workers()
    except Exception as e:  # any Redis failure means not ready; its details (the address) only in the log
        log.warning("readyz: Redis is not reachable: %s", e)
        raise ApiError(503, "redis_unavailable", "the job store is unavailable") from None
    if not workers:
        raise ApiError(503, "no_live_workers",
                       "no worker has sent a heartbeat recently; start `vidpose worker`")
    return {"status": "ready", "workers": len(workers)}


def prometheus_metrics(request: Request):
    settings, queue = app_state(request)
    try:  # gauges that live in Redis are read at scrape time
        metrics.BACKLOG_FRAMES.set(queue.backlog_frames())
        metrics.LIVE_WORKERS.set(len(queue.live_workers()))
        metrics.DEAD_LETTER_JOBS.set(queue.dead_letter_count())
        for name in set(settings.models) | set(queue.list_models()):
            metrics.QUEUE_JOBS.labels(name).set(queue.queue_length(name))
    except Exception:  # Redis down: still serve what this process knows
        pass
    body, content_type = metrics.render(metrics.API_REGISTRY)
    return Response(body, media_type=content_type)


def ops_router() -> APIRouter:
    """Probes and metrics: never behind auth, only at the root."""
    r = APIRouter(tags=["ops"])
    r.add_api_route("/healthz", healthz, methods=["GET"], summary="Liveness: the process answers")
    r.add_api_route("/readyz", readyz, methods=["GET"], responses={503: {"model": ErrorBody}},
                    summary="Readiness: Redis reachable and at least one live worker")
    r.add_api_route("/metrics", prometheus_metrics, methods=["GET"], response_class=Response,
                    summary="Prometheus metrics of the API process")
    return r
