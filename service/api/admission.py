"""Checks of POST /estimate that ask Redis: is the model known and served, can a worker run the
detector, is the queue full? (Synchronous: the endpoint calls them through the threadpool.)"""

from __future__ import annotations

from service import detectors
from service.api import catalog
from service.api.errors import ApiError
from service.queue import JobQueue
from service.settings import Settings


def known_models(settings: Settings, queue: JobQueue) -> set[str]:
    names = set(settings.models) | {settings.default_model} | set(queue.list_models())
    if settings.models_dir.is_dir():
        names |= {p.stem for p in settings.models_dir.glob("*.safetensors")}
    return names


def check_detector(queue: JobQueue, settings: Settings, model: str, detector: str) -> None:
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


def check_served(queue: JobQueue, model: str) -> None:
    """422 `model_not_served` when live workers are known, all of them say which models they serve, and
    none serves `model` (such a job would wait forever). With no live worker the job is queued as before."""
    workers = queue.live_workers()
    served = catalog.served_models(workers) if workers else None
    if served is None:  # no worker, or one that has not said what it serves
        return
    if model not in served:
        raise ApiError(422, "model_not_served", f"no live worker serves model {model!r}; served: "
                       f"{', '.join(served)} (GET /models)")


def too_busy(settings: Settings, backlog: int) -> ApiError:
    return ApiError(429, "too_many_requests",
                    f"the queue is full ({backlog} frames waiting, limit {settings.max_queued_frames}); "
                    f"retry in {settings.retry_after_s} s", {"Retry-After": str(settings.retry_after_s)})
