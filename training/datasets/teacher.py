"""Pseudo-labels from the served single-frame model: a `vidpose estimate` result as training targets.

No labelled real video can be downloaded here, so the frozen real single-frame model (MoveNet) is the
teacher: the service's own result JSON for a clip (`vidpose estimate CLIP --out LABELS.json`) gives
each tracked person's box in every frame, and the teacher's keypoints on the clean frames. Training
uses the boxes to cut the same crops the service cuts (model/windows.py's window rule); the targets
themselves are recomputed from the clean key crop by the frozen model (training/feature_cache.py).

Key samples are (frame, track) pairs whose clean-frame teacher is confident: at least `min_joints`
joints with score >= `min_score`. Joints under `min_score` get weight 0 (the teacher is unsure there,
so it has nothing to teach); persons with fewer confident joints are not used as key frames at all
(they may still be neighbours in a window).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.windows import clamp_window


@dataclass
class TeacherLabels:
    video: dict  # width, height, fps, frames
    keypoint_names: list[str]
    boxes: dict[tuple[int, int], np.ndarray]  # (frame, track) -> COCO xywh
    keypoints: dict[tuple[int, int], np.ndarray]  # (frame, track) -> (K, 3) image pixels + score

    @property
    def num_frames(self) -> int:
        return int(self.video["frames"])


@dataclass
class KeySample:
    frame: int  # key frame
    track: int
    window: list[int]  # T frame indices (clamped), key at T // 2


def load_labels(path: str | Path) -> TeacherLabels:
    """A `vidpose estimate` JSON result (all pages merged) -> TeacherLabels."""
    data = json.loads(Path(path).read_text())
    if "frames" not in data or "video" not in data:
        raise ValueError(f"{path}: not a vidpose result (needs 'video' and 'frames'; "
                         "write one with `vidpose estimate CLIP --out FILE`)")
    boxes, kps = {}, {}
    for frame in data["frames"]:
        f = int(frame["frame_index"])
        for inst in frame["instances"]:
            key = (f, int(inst["track_id"]))
            boxes[key] = np.asarray(inst["bbox"], dtype=np.float64)
            kps[key] = np.asarray(inst["keypoints"], dtype=np.float64)
    return TeacherLabels(dict(data["video"]), list(data["keypoint_names"]), boxes, kps)


def key_samples(labels: TeacherLabels, frames: range, window: int, min_score: float = 0.3,
                min_joints: int = 8, key_every: int = 1) -> list[KeySample]:
    """Confident (frame, track) key samples with key frame in `frames` (every `key_every`-th frame);
    windows stay inside `frames` (a held-out split never borrows frames from the training split)."""
    present = set(labels.boxes)
    half = window // 2
    out = []
    for f, track in sorted(labels.boxes, key=lambda k: (k[0], k[1])):
        if f not in frames or (f - frames.start) % key_every:
            continue
        if int((labels.keypoints[(f, track)][:, 2] >= min_score).sum()) < min_joints:
            continue
        win = clamp_window(f, half, lambda g, t=track: g in frames and (g, t) in present)
        out.append(KeySample(f, track, win))
    return out


def split_frames(num_frames: int, split: str, val_fraction: float = 0.2) -> range:
    """train: the first (1 - val_fraction) of the clip; val: the rest; all: every frame."""
    cut = int(round(num_frames * (1.0 - val_fraction)))
    if split == "train":
        return range(0, cut)
    if split == "val":
        return range(cut, num_frames)
    if split == "all":
        return range(0, num_frames)
    raise ValueError(f"split must be train, val or all, not {split!r}")
