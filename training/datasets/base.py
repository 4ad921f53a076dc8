"""Shared machinery for the window datasets: sampling augmentation, building items.

Every dataset is a list of `WindowSample`s (which frames, which boxes, the
key-frame ground truth); `WindowDataset.__getitem__` reads the frames and
turns a sample into the item dict the trainer consumes:

    frames         float32 (T, 3, H, W)  normalised crops, key frame at T // 2
    heatmaps       float32 (K, h, w)     Gaussian targets of the key frame
    target_weight  float32 (K,)          1 = labelled joint whose Gaussian reaches the map
    keypoints      float32 (K, 3)        key-frame GT in image pixels (x, y, v); v > 0 labelled
    keypoints_crop float32 (K, 3)        the same in crop pixels after augmentation (slots flipped)
    flipped        bool ()               the window was mirrored: heatmaps/keypoints_crop slots are swapped
                                         (keypoints stays in the image's own slots)
    occluded       float32 (K,)          1 = labelled but hidden in the frame (synthetic data), else 0
    center, size   float32 (2,)          key-frame crop region (heatmap_to_image input when train=False)
    affine         float32 (2, 3)        key-frame image -> crop affine (includes rotation and flip)
    box            float32 (4,)          key-frame person box, COCO xywh
    head_box       float32 (4,)          GT head box xywh (zeros when the data has none)
    head_size      float32 ()            0.6 x head-box diagonal (PCKh normaliser; 0 when none)
    window_indices int64 (T,)            frame numbers read for the window (after clamping)
    image_id, frame_id, track_id  int;   video, file_name  str
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from model.backbones import input_spec
from model.config import PoseModelConfig
from training.datasets.frames import FrameCache
from training.datasets.layouts import KeypointLayout
from training.transforms import AugmentConfig, AugmentParams, make_window, sample_augment


@dataclass
class WindowSample:
    paths: list[Path]  # T frame files, key frame at T // 2
    boxes: np.ndarray  # (T, 4) xywh: this person's box in each frame (key box where unknown)
    keypoints: np.ndarray  # (K, 3) key-frame GT, image pixels
    window_indices: list[int]
    image_id: int = 0
    frame_id: int = 0
    track_id: int = -1
    video: str = ""
    file_name: str = ""
    head_box: np.ndarray | None = None
    occluded: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def head_size_of(head_box) -> float:
    """PoseTrack/poseval head size: 0.6 x the head box diagonal."""
    if head_box is None:
        return 0.0
    return 0.6 * float(np.hypot(head_box[2], head_box[3]))


def box_from_keypoints(keypoints, margin: float = 0.15):
    """A COCO box around the labelled keypoints, grown by `margin` per side (fallback when no bbox)."""
    kps = np.asarray(keypoints, dtype=np.float64)
    pts = kps[kps[:, 2] > 0, :2]
    if len(pts) == 0:
        return None
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    return np.array([x0 - margin * w, y0 - margin * h, w * (1 + 2 * margin), h * (1 + 2 * margin)])


class WindowDataset(Dataset):
    """Base: subclasses fill `self.samples` (list[WindowSample]) and `self.layout`."""

    layout: KeypointLayout

    def __init__(self, cfg: PoseModelConfig, train: bool, sigma: float = 3.0,
                 augment: AugmentConfig | None = None, seed: int | None = None,
                 cache_mb: int = 128):
        self.cfg = cfg
        self.train = train
        self.sigma = sigma
        self.augment = augment or AugmentConfig()
        self.seed = seed
        self.epoch = 0
        self.cache = FrameCache(cache_mb << 20)
        self.samples: list[WindowSample] = []

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """With a fixed `seed`, augmentation is a pure function of (seed, epoch, index)."""
        self.epoch = int(epoch)

    def _params(self, index: int) -> AugmentParams:
        if not self.train:
            return AugmentParams()
        if self.seed is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
        else:  # follows torch's seeding (torch.manual_seed + per-worker seeds)
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        return sample_augment(rng, self.augment)

    def __getitem__(self, index: int) -> dict:
        s = self.samples[index]
        images = [self.cache.get(p) for p in s.paths]
        params = self._params(index)
        out = make_window(images, s.boxes, s.keypoints, self.cfg.input_size, self.cfg.heatmap_size,
                          self.layout.flip_perm, params, key_index=len(images) // 2, sigma=self.sigma,
                          spec=input_spec(self.cfg))
        k = s.keypoints.shape[0]
        item = {name: torch.from_numpy(value) for name, value in out.items()}
        item.update(
            keypoints=torch.from_numpy(s.keypoints.astype(np.float32)),
            occluded=torch.from_numpy(np.asarray(s.occluded if s.occluded is not None else np.zeros(k),
                                                 dtype=np.float32)),
            box=torch.from_numpy(np.asarray(s.boxes[len(s.boxes) // 2], dtype=np.float32)),
            head_box=torch.from_numpy(np.asarray(s.head_box if s.head_box is not None else np.zeros(4),
                                                 dtype=np.float32)),
            head_size=torch.tensor(head_size_of(s.head_box), dtype=torch.float32),
            window_indices=torch.tensor(s.window_indices, dtype=torch.int64),
            flipped=torch.tensor(params.flip),
            image_id=int(s.image_id),
            frame_id=int(s.frame_id),
            track_id=int(s.track_id),
            video=s.video,
            file_name=s.file_name,
        )
        return item
