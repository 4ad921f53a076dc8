"""OpenCV's HOG + linear SVM people detector (Dalal-Triggs, the built-in default people model).

Works offline with no model file, but is a weak detector: upright, mostly
unoccluded people seen from the side/front, at least ~100 px tall in the
resized frame. Details (all in docs/detectors.md):

- size: each frame is resized to `hog_height` rows first, so people smaller
  than the 64x128 window in small frames get upscaled (and 1080p frames get
  cheaper); the image pyramid then finds bigger people.
- score: the SVM margin m (signed distance to the hyperplane, usually -1..3)
  maps to sigmoid((m - 0.5) / 0.5): m = 0 (the SVM's own decision boundary)
  -> 0.27, m = 0.5 -> 0.5, m = 1 -> 0.73, m = 2 -> 0.95. Windows are asked
  for down to the margin whose score is low_score, so the low band exists for
  the tracker's second association.
- box: the 64x128 window has a margin around the person; it is shrunk by 10%
  of its width per side and 5% of its height per side (tuned on the PoseTrack
  sample frames against ground-truth boxes).

Thread-safe: each thread has its own HOGDescriptor; a batch runs its frames
in a small thread pool (OpenCV releases the GIL inside detectMultiScale).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from service.worker.detect.base import Detection, DetectorConfig, DetectorError, check_frame
from service.worker.detect.nms import select

MARGIN_CENTER = 0.5  # SVM margin that maps to score 0.5
MARGIN_SCALE = 0.5  # margin units per logit unit
MIN_MARGIN = -1.0  # never ask for windows below this margin (they are noise, and slow to group)
SHRINK_X, SHRINK_Y = 0.10, 0.05  # window -> person box, fraction of the window per side


def margin_to_score(margin: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.asarray(margin, dtype=np.float64) - MARGIN_CENTER) / MARGIN_SCALE))


def score_to_margin(score: float) -> float:
    if score <= 0:
        return MIN_MARGIN
    if score >= 1:
        return math.inf
    return max(MIN_MARGIN, MARGIN_CENTER + MARGIN_SCALE * math.log(score / (1 - score)))


def hog_available() -> bool:
    return hasattr(cv2, "HOGDescriptor")


class HogDetector:
    name = "hog"

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        if not hog_available():
            # OpenCV 5 moved HOG out of the main wheel into opencv-contrib.
            raise DetectorError(
                f"the hog detector needs cv2.HOGDescriptor, missing from OpenCV {cv2.__version__} "
                "(OpenCV >= 5 ships it in opencv-contrib-python-headless only; install that wheel "
                "instead of opencv-python-headless, or use opencv-python-headless < 5)")
        self.config = config
        self._local = threading.local()
        self._hit_threshold = score_to_margin(config.low_score)
        self._pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="hog")

    def _hog(self) -> cv2.HOGDescriptor:
        hog = getattr(self._local, "hog", None)
        if hog is None:
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())
            self._local.hog = hog
        return hog

    def detect_one(self, frame: np.ndarray) -> list[Detection]:
        h, w = check_frame(frame).shape[:2]
        cfg = self.config
        f = cfg.hog_height / h
        size = (max(64, round(w * f)), max(128, round(h * f)))
        img = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        fx, fy = size[0] / w, size[1] / h
        if not math.isfinite(self._hit_threshold):
            return []
        rects, margins = self._hog().detectMultiScale(
            img, hitThreshold=self._hit_threshold, winStride=(cfg.hog_stride, cfg.hog_stride),
            padding=(cfg.hog_padding, cfg.hog_padding), scale=cfg.hog_scale, groupThreshold=0)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        if not len(rects):
            return []
        x0 = (rects[:, 0] + SHRINK_X * rects[:, 2]) / fx
        y0 = (rects[:, 1] + SHRINK_Y * rects[:, 3]) / fy
        x1 = (rects[:, 0] + (1 - SHRINK_X) * rects[:, 2]) / fx
        y1 = (rects[:, 1] + (1 - SHRINK_Y) * rects[:, 3]) / fy
        scores = margin_to_score(np.asarray(margins, dtype=np.float64).reshape(-1))
        return select(np.stack([x0, y0, x1, y1], axis=1), scores, w, h, cfg)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        frames = [check_frame(f) for f in frames]
        if len(frames) <= 1 or self.config.threads == 1:
            return [self.detect_one(f) for f in frames]
        return list(self._pool.map(self.detect_one, frames))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
