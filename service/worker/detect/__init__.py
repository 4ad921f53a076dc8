"""Person detectors for the worker: hog (offline default), onnx (user YOLO file), full-frame.

    det = make_detector("hog", DetectorConfig())      # or "onnx", "full-frame", "auto"
    det.detect([rgb_uint8, ...]) -> [[Detection(bbox=(x, y, w, h), score), ...], ...]

Backends, scores and the ONNX layout: docs/detectors.md.
"""

from __future__ import annotations

from service.worker.detect.base import Detection, Detector, DetectorConfig, DetectorError

NAMES = ("hog", "onnx", "full-frame")

__all__ = ["NAMES", "Detection", "Detector", "DetectorConfig", "DetectorError", "make_detector"]


def make_detector(name: str, config: DetectorConfig = DetectorConfig()) -> Detector:
    """name: hog | onnx | full-frame | auto (onnx when config.model_path is set, else hog)."""
    if name == "auto":
        name = "onnx" if config.model_path is not None else "hog"
    if name == "hog":
        from service.worker.detect.hog import HogDetector

        return HogDetector(config)
    if name == "onnx":
        from service.worker.detect.onnx import OnnxDetector

        return OnnxDetector(config)
    if name == "full-frame":
        from service.worker.detect.fullframe import FullFrameDetector

        return FullFrameDetector(config)
    raise DetectorError(f"unknown detector {name!r}; expected one of {', '.join(NAMES)} or auto")
