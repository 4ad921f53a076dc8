"""Windows of cached backbone features (training/feature_cache.py) as a dataset: `features:CACHE_DIR`.

Items (the trainer's feature path; see PoseModel.distill_loss):
    features       float32 (T, C, h, w)  the window's features; the key frame's possibly corrupted
    clean_key      float32 (C, h, w)     the key frame's clean features (the teacher's input)
    target_weight  float32 (K,)          1 where the clean-frame teacher is confident
    pck_threshold  float32 ()            PCK@0.1 threshold in heatmap cells
    kind           int                   index into meta["kinds"] of the key's corruption, -1 = clean
    frame_id, track_id  int

Training draws, per item and epoch, a corrupted key with probability `corrupt_prob` (one of the
sample's cached variants), else the clean key. Evaluation (train=False) lists every sample twice:
clean, and under its one fixed corruption, so both numbers come from the same people.
`sample_every` keeps every N-th key sample (neighbouring frames are nearly the same picture).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from model.config import PoseModelConfig
from training.datasets.layouts import COCO


class CachedFeatureWindows(Dataset):
    layout = COCO  # the teacher's (MoveNet's) slots

    def __init__(self, root: str | Path, cfg: PoseModelConfig | None = None, train: bool = True,
                 corrupt_prob: float = 0.75, seed: int | None = None, sample_every: int = 1):
        root = Path(root)
        if not (root / "meta.json").is_file():
            raise FileNotFoundError(f"{root}: no feature cache here "
                                    "(write one with `vidpose cache-features`)")
        self.root = root
        self.meta = json.loads((root / "meta.json").read_text())
        if cfg is not None:
            for field in ("backbone", "width_mult", "input_size", "heatmap_size", "window"):
                want, have = getattr(cfg, field), self.meta["config"][field]
                if (list(want) if isinstance(want, tuple) else want) != have:
                    raise ValueError(f"{root}: cached for {field}={have}, the model has {want}")
        self.samples = json.loads((root / "index.json").read_text())[::max(1, int(sample_every))]
        self.kinds = list(self.meta["kinds"])
        self.clean = np.load(root / "clean.npy", mmap_mode="r")
        self.corrupt = np.load(root / "corrupt.npy", mmap_mode="r")
        self.train = train
        self.corrupt_prob = corrupt_prob
        self.seed = seed
        self.epoch = 0
        # evaluation: (sample, variant) with variant -1 = clean
        self.items = ([(i, None) for i in range(len(self.samples))] if train else
                      [(i, v) for i, s in enumerate(self.samples) for v in [-1, *range(len(s["corrupt"]))]])

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _variant(self, index: int, sample: dict) -> int:
        if self.seed is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
        else:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        if not sample["corrupt"] or rng.random() >= self.corrupt_prob:
            return -1
        return int(rng.integers(len(sample["corrupt"])))

    def __getitem__(self, index: int) -> dict:
        i, variant = self.items[index]
        s = self.samples[i]
        if variant is None:
            variant = self._variant(index, s)
        feats = torch.from_numpy(np.asarray(self.clean[s["window"]], dtype=np.float32))
        key = len(s["window"]) // 2
        clean_key = feats[key].clone()
        kind = -1
        if variant >= 0:
            feats[key] = torch.from_numpy(np.asarray(self.corrupt[s["corrupt"][variant]], dtype=np.float32))
            kind = self.kinds.index(s["kinds"][variant])
        return {"features": feats, "clean_key": clean_key,
                "target_weight": torch.tensor(s["weights"], dtype=torch.float32),
                "pck_threshold": torch.tensor(s["pck_threshold"], dtype=torch.float32),
                "kind": kind, "frame_id": int(s["frame"]), "track_id": int(s["track"])}
