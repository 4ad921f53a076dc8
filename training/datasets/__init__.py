"""Window datasets for training and evaluation (items described in base.py).

    PoseTrackDataset(annotations, image_root, cfg, train, sigma=3.0, ...)   PoseTrack18/21 per-video JSON
    CocoKeypointsDataset(ann_file, image_root, cfg, train, sigma=3.0, ...)  COCO keypoints, T copies
    ClipsDataset(root, cfg, train, sigma=3.0, split=None, ...)              the user's clips (docs/data.md)
    synthetic_dataset(root, split, cfg, train, sigma=3.0, ...)              `vidpose synth` output
    CachedFeatureWindows(root, cfg, train, ...)                             `vidpose cache-features` output

Names resolve lazily so torch-free users (evaluation, layouts) do not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "WindowDataset": "base", "WindowSample": "base",
    "ClipsDataset": "clips", "synthetic_dataset": "clips",
    "CocoKeypointsDataset": "coco", "CachedFeatureWindows": "features",
    "COCO": "layouts", "POSETRACK18": "layouts", "KeypointLayout": "layouts", "layout_from_names": "layouts",
    "PoseTrackDataset": "posetrack", "load_posetrack": "posetrack",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'training.datasets' has no attribute {name!r}")
    return getattr(importlib.import_module(f"training.datasets.{_EXPORTS[name]}"), name)
