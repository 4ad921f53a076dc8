"""Multi-person tracking by detection: ByteTrack-style two-stage IoU association.

One `Tracker` per clip; `update(detections)` is called once per frame, in order, and
returns the boxes of the tracks seen in THAT frame with stable integer ids.

Per frame:
  1. every track's box is predicted forward with its constant-velocity estimate;
  2. high-score detections (>= high_score) are matched to all tracks, live and lost,
     by IoU with the Hungarian algorithm (pairs under match_iou are never matched);
  3. low-score detections (low_score <= s < high_score) are matched the same way to the
     tracks that were live in the previous frame and are still unmatched: a person who is
     partly occluded often scores low, and this keeps their id without letting clutter
     start tracks (ByteTrack's idea);
  4. unmatched high-score detections start new tracks; tracks unmatched for more than
     max_gap frames are dropped (their id becomes free again).

Pure numpy + scipy (no torch): the worker runs it on the CPU beside the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from service.worker.boxes import PersonBox
from service.worker.detect.base import Detection

# Weight of the newest observed displacement in the velocity estimate (see _Track.observe).
VELOCITY_SMOOTHING = 0.5


@dataclass(frozen=True)
class TrackerConfig:
    high_score: float = 0.5  # detections at least this good start and extend tracks
    low_score: float = 0.1  # detections between this and high_score only extend live tracks
    match_iou: float = 0.2  # least IoU between a predicted track box and a detection
    max_gap: int = 30  # frames a track may go unmatched and keep its id
    max_ids: int = 1000  # ids are integers in [0, max_ids)

    def __post_init__(self):
        if not 0 <= self.low_score <= self.high_score:
            raise ValueError(f"need 0 <= low_score <= high_score, got {self.low_score}, {self.high_score}")
        if not 0 <= self.match_iou <= 1:
            raise ValueError(f"match_iou must be in [0, 1], got {self.match_iou}")
        if self.max_gap < 0 or self.max_ids < 1:
            raise ValueError("max_gap must be >= 0 and max_ids >= 1")


class _Track:
    """One person: last matched box (centre x, y, w, h) and a smoothed per-frame velocity.

    Prediction is constant velocity from an exponential moving average of the observed
    displacement per frame, not a Kalman filter: a Kalman filter's noise covariances have to be
    tuned to the pixel scale and frame rate of the footage, while this has one unitless weight,
    and for the steady motion of walking people between detections both extrapolate the same way.
    Only the centre moves; the size is held at the last observation (size "velocity" from jittery
    detector boxes mostly adds noise, and a lost box that grows or shrinks unchecked stops matching).
    """

    def __init__(self, track_id: int, bbox: Sequence[float]):
        self.track_id = track_id
        self.state = _to_cxcywh(bbox)
        self.velocity = np.zeros(2)
        self.missed = 0  # frames since the last match (0: matched in the previous frame)

    def predict(self) -> np.ndarray:
        """Predicted (x, y, w, h) box for the current frame."""
        cx, cy, w, h = self.state
        steps = self.missed + 1
        return np.array([cx + self.velocity[0] * steps - w / 2, cy + self.velocity[1] * steps - h / 2, w, h])

    def observe(self, bbox: Sequence[float]) -> None:
        new = _to_cxcywh(bbox)
        step = (new[:2] - self.state[:2]) / (self.missed + 1)  # displacement per frame over the gap
        self.velocity = VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * self.velocity
        self.state = new
        self.missed = 0


def _to_cxcywh(bbox: Sequence[float]) -> np.ndarray:
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x + w / 2, y + h / 2, w, h])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of (x, y, w, h) boxes: a (N, 4), b (M, 4) -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _assign(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Hungarian assignment maximising total IoU; pairs below min_iou are left unmatched."""
    if iou.size == 0:
        return []
    allowed = iou >= min_iou
    if min_iou <= 0:
        allowed &= iou > 0  # a box that does not overlap at all is never the same person
    # Forbidden pairs cost more than any allowed full assignment, so they are only chosen
    # when nothing else is left, and then dropped.
    cost = np.where(allowed, 1.0 - iou, 1.0 + len(iou) + len(iou[0]))
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


class Tracker:
    """Associates per-frame person detections into tracks with stable ids (see module docstring)."""

    def __init__(self, config: TrackerConfig = TrackerConfig()):
        self.config = config
        self.tracks: list[_Track] = []
        self._next_id = 0  # where the search for a free id starts (ids are handed out in order)

    def _new_id(self) -> int | None:
        """The next id in order, wrapping past max_ids to the smallest free one; None when all are held."""
        used = {t.track_id for t in self.tracks}
        n = self.config.max_ids
        for k in range(n):
            candidate = (self._next_id + k) % n
            if candidate not in used:
                self._next_id = candidate + 1
                return candidate
        return None

    def update(self, detections: Sequence[Detection]) -> list[PersonBox]:
        """Associate one frame's detections; returns the boxes of tracks matched in this frame, by id."""
        cfg = self.config
        dets = [d for d in detections if _usable(d) and d.score >= cfg.low_score]
        high = [d for d in dets if d.score >= cfg.high_score]
        low = [d for d in dets if d.score < cfg.high_score]
        tracks = self.tracks
        predicted = np.array([t.predict() for t in tracks]).reshape(-1, 4)
        matched: list[tuple[_Track, Detection]] = []

        # Stage 1: confident detections against every track, live or lost.
        high_boxes = np.array([d.bbox for d in high], dtype=float).reshape(-1, 4)
        pairs = _assign(iou_matrix(predicted, high_boxes), cfg.match_iou)
        matched += [(tracks[t], high[d]) for t, d in pairs]
        taken_tracks = {t for t, _ in pairs}
        taken_high = {d for _, d in pairs}

        # Stage 2: weak detections only extend tracks that were seen in the previous frame.
        rest = [i for i, t in enumerate(tracks) if i not in taken_tracks and t.missed == 0]
        low_boxes = np.array([d.bbox for d in low], dtype=float).reshape(-1, 4)
        pairs2 = _assign(iou_matrix(predicted[rest], low_boxes), cfg.match_iou)
        matched += [(tracks[rest[t]], low[d]) for t, d in pairs2]
        taken_tracks |= {rest[t] for t, _ in pairs2}

        for i, track in enumerate(tracks):
            if i not in taken_tracks:
                track.missed += 1
        self.tracks = [t for t in tracks if t.missed <= cfg.max_gap]
        for track, det in matched:
            track.observe(det.bbox)

        # Unmatched confident detections are new people.
        for d, det in enumerate(high):
            if d in taken_high:
                continue
            track_id = self._new_id()
            if track_id is None:  # every id is held by a live or lost track: no room for another
                continue
            track = _Track(track_id, det.bbox)
            self.tracks.append(track)
            matched.append((track, det))

        out = [PersonBox(t.track_id, tuple(float(v) for v in det.bbox), float(det.score))
               for t, det in matched]
        return sorted(out, key=lambda b: b.track_id)


def _usable(det: Detection) -> bool:
    x, y, w, h = det.bbox
    return all(math.isfinite(float(v)) for v in (x, y, w, h, det.score)) and w > 0 and h > 0
