"""The full-frame "detector": one box = the whole frame, score 1 (single-person clips)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.worker.detect.base import Detection, DetectorConfig, check_frame


class FullFrameDetector:
    name = "full-frame"

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        self.config = config

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        out = []
        for frame in frames:
            h, w = check_frame(frame).shape[:2]
            out.append([Detection((0.0, 0.0, float(w), float(h)), 1.0)])
        return out
