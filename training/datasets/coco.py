"""COCO keypoints (person_keypoints_*.json): single images as windows of T copies.

Crowd annotations are always skipped; people without labelled keypoints are
skipped for training (no signal) and kept for evaluation only when
`min_keypoints=0` is asked for (box-only people, as a detector would see them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.config import PoseModelConfig
from training.datasets.base import WindowDataset, WindowSample
from training.datasets.layouts import layout_from_names
from training.transforms import AugmentConfig


class CocoKeypointsDataset(WindowDataset):
    """ann_file: COCO keypoints JSON; image_root: folder its `file_name`s are relative to."""

    def __init__(self, ann_file, image_root, cfg: PoseModelConfig, train: bool, sigma: float = 3.0,
                 augment: AugmentConfig | None = None, seed: int | None = None, min_keypoints: int = 1,
                 cache_mb: int = 128):
        super().__init__(cfg, train, sigma, augment, seed, cache_mb)
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root)
        with open(self.ann_file) as fh:
            data = json.load(fh)
        person = [c for c in data.get("categories", []) if c.get("name") == "person"]
        if len(person) != 1:
            raise ValueError(f"{ann_file}: expected one 'person' category")
        self.layout = layout_from_names(person[0]["keypoints"])
        cat_id = person[0]["id"]
        images = {im["id"]: im for im in data["images"]}
        k = self.layout.num_keypoints
        t = cfg.window
        for ann in sorted(data.get("annotations", []), key=lambda a: a["id"]):
            if ann.get("category_id", cat_id) != cat_id or ann.get("iscrowd", 0):
                continue
            kps = np.asarray(ann.get("keypoints") or [0] * (3 * k), dtype=np.float64).reshape(k, 3)
            if int((kps[:, 2] > 0).sum()) < min_keypoints:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w < 1 or h < 1:
                continue
            im = images[ann["image_id"]]
            path = self.image_root / im["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"{ann_file}: image {path} not found")
            self.samples.append(WindowSample(
                paths=[path] * t, boxes=np.tile([x, y, w, h], (t, 1)), keypoints=kps,
                window_indices=[0] * t, image_id=im["id"], frame_id=im["id"], track_id=-1,
                video="", file_name=im["file_name"], extra={"ann_id": ann["id"]}))
