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

from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from service.contract import JobOptions


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


def parse_boxes(raw) -> dict[int, list[PersonBox]]:
    """Client boxes in either accepted shape, validated as the API does (service.contract.JobOptions)
    -> {frame_index: [PersonBox]} (only frames that have boxes)."""
    try:
        boxes = JobOptions.model_validate({"boxes": raw}).boxes or {}
    except ValidationError as e:
        raise InvalidOptions("boxes: " + "; ".join(err["msg"] for err in e.errors())) from None
    return {int(frame): [PersonBox(i if b.track_id is None else b.track_id, tuple(b.bbox), b.score)
                         for i, b in enumerate(items)]
            for frame, items in boxes.items()}


class GivenBoxes:
    """Boxes from the job options."""

    def __init__(self, boxes: dict[int, list[PersonBox]]):
        self.boxes = boxes

    def __call__(self, frame_index: int, rgb: np.ndarray) -> list[PersonBox]:
        return self.boxes.get(frame_index, [])
