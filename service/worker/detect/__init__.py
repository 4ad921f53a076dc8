"""Person detectors for the worker: built from the registry (service/detectors.py).

    det = make_detector("nanodet", DetectorConfig())   # or "hog", "onnx", "full-frame", "auto"
    det.detect([rgb_uint8, ...]) -> [[Detection(bbox=(x, y, w, h), score), ...], ...]

Backends, scores, thresholds and the ONNX layout: docs/detectors.md.
"""

from __future__ import annotations

import importlib

from service.detectors import REGISTRY, DetectorSpec, names
from service.worker.detect.base import Detection, Detector, DetectorConfig, DetectorError

__all__ = ["Detection", "Detector", "DetectorConfig", "DetectorError", "DetectorSpec", "make_detector",
           "names"]


def resolve_auto(config: DetectorConfig) -> str:
    """"auto" without settings: onnx when config.model_path is set, else nanodet when its package is
    present, else hog (service.detectors.resolve is the settings-level rule, with its warning)."""
    from service.detectors import tfjs_models_path

    if config.model_path is not None:
        return "onnx"
    p = config.tfjs_models or tfjs_models_path()
    return "nanodet" if p.exists() else "hog"


def make_detector(name: str, config: DetectorConfig = DetectorConfig()) -> Detector:
    """A detector by registry name (or "auto"), built by its factory with `config`."""
    if name == "auto":
        name = resolve_auto(config)
    spec = REGISTRY.get(name)
    if spec is None:
        raise DetectorError(f"unknown detector {name!r}; expected one of {', '.join(names())} or auto")
    factory = spec.factory
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(config)
