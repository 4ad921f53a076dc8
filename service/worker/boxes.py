"""Person boxes per frame given by the client (`options.boxes`), and the one-full-frame-box source.

Detected + tracked boxes come from service/worker/people.py, which picks the
source of each job; every source yields the same PersonBox.

Client boxes (`options["boxes"]`) are accepted in two shapes:
  * a list indexed by frame: `boxes[i]` is the list of boxes in frame i;
  * an object keyed by frame index: `{"0": [...], "7": [...]}`.
A box is `[x, y, w, h]` (COCO, pixels) or `{"bbox": [x, y, w, h], "track_id": int, "score": float}`
(`track_id` and `score` optional). A box without `track_id` gets its index in
that frame's list, so "the i-th box of every frame" is one person. Frames without
boxes have no people (their result has empty `instances`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from service.box_options import frame_box_lists


class InvalidOptions(ValueError):
    """Job options the worker cannot use (job error_code "invalid_options")."""

    code = "invalid_options"


@dataclass(frozen=True)
class PersonBox:
    track_id: int
    bbox: tuple[float, float, float, float]  # COCO x, y, w, h in pixels
    score: float | None = None


def full_frame_boxes(frame_index: int, rgb: np.ndarray) -> list[PersonBox]:
    """The "full-frame" detector's box (service/worker/detect/fullframe.py) as track 0, no score
    (what a full-frame job gets; for benches that skip the people source)."""
    from service.worker.detect.fullframe import FullFrameDetector

    return [PersonBox(i, d.bbox, None) for i, d in enumerate(FullFrameDetector().detect([rgb])[0])]


def _parse_box(raw, index: int, where: str) -> PersonBox:
    score = None
    track_id = index
    if isinstance(raw, dict):
        bbox = raw.get("bbox", raw.get("box"))
        if "track_id" in raw and raw["track_id"] is not None:
            track_id = raw["track_id"]
        score = raw.get("score")
    else:
        bbox = raw
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise InvalidOptions(f"{where}: a box must be [x, y, w, h]")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InvalidOptions(f"{where}: box values must be numbers") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise InvalidOptions(f"{where}: box needs finite values and w, h > 0")
    if isinstance(track_id, bool) or not isinstance(track_id, int) or track_id < 0:
        raise InvalidOptions(f"{where}: track_id must be a non-negative integer")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise InvalidOptions(f"{where}: score must be a finite number")
        score = float(score)
    return PersonBox(track_id, (x, y, w, h), score)


def parse_boxes(raw) -> dict[int, list[PersonBox]]:
    """Validate client boxes -> {frame_index: [PersonBox]} (only frames that have boxes)."""
    try:
        items = frame_box_lists(raw)
    except ValueError as e:
        raise InvalidOptions(f"boxes: {e}") from None
    out: dict[int, list[PersonBox]] = {}
    for frame, boxes in items:
        parsed = [_parse_box(b, i, f"boxes[{frame}][{i}]") for i, b in enumerate(boxes)]
        ids = [b.track_id for b in parsed]
        if len(set(ids)) != len(ids):
            raise InvalidOptions(f"boxes[{frame}]: track ids repeat within one frame")
        if parsed:
            out[frame] = parsed
    return out


class GivenBoxes:
    """Boxes from the job options."""

    def __init__(self, boxes: dict[int, list[PersonBox]]):
        self.boxes = boxes

    def __call__(self, frame_index: int, rgb: np.ndarray) -> list[PersonBox]:
        return self.boxes.get(frame_index, [])
