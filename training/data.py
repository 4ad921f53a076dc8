"""Data specs -> datasets: how the trainer and `vidpose eval` name their data.

    synth:ROOT                          `vidpose synth --out ROOT` output (split from train/val)
    posetrack:ANNOTATIONS:IMAGE_ROOT    PoseTrack18/21 JSON file or folder, images relative to IMAGE_ROOT
    coco:ANN_FILE:IMAGE_ROOT            COCO keypoints JSON (single images, T copies per window)
    clips:ROOT                          the user's clips (docs/data.md), split from train/val
    features:CACHE_DIR                  `vidpose cache-features` output: cached backbone features of a
                                        clip's windows, clean and with corrupted key frames (temporal
                                        training against a frozen single-frame teacher)
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from model.config import PoseModelConfig


def build_dataset(spec: str, cfg: PoseModelConfig, train: bool, sigma: float = 3.0,
                  augment: bool = True, seed: int | None = None, corrupt_prob: float = 0.75) -> Dataset:
    from training import datasets as ds
    from training.transforms import AugmentConfig

    kind, _, rest = spec.partition(":")
    if not rest:
        raise ValueError(f"data spec {spec!r}: expected KIND:PATH[:PATH] (see training/data.py)")
    split = "train" if train else "val"
    aug = AugmentConfig() if augment else AugmentConfig(scale_factor=0.0, rotation_factor=0.0, flip_prob=0.0,
                                                         color_prob=0.0)
    kwargs = dict(augment=aug, seed=seed)
    if kind == "synth":
        return ds.synthetic_dataset(Path(rest), split, cfg, train, sigma, **kwargs)
    if kind == "clips":
        return ds.ClipsDataset(Path(rest), cfg, train, sigma, split=split, **kwargs)
    if kind == "features":
        return ds.CachedFeatureWindows(Path(rest), cfg, train, corrupt_prob=corrupt_prob, seed=seed)
    if kind in ("posetrack", "coco"):
        ann, sep, root = rest.rpartition(":")
        if not sep:
            raise ValueError(f"data spec {spec!r}: expected {kind}:ANNOTATIONS:IMAGE_ROOT")
        if kind == "posetrack":
            return ds.PoseTrackDataset(Path(ann), Path(root), cfg, train, sigma, **kwargs)
        return ds.CocoKeypointsDataset(Path(ann), Path(root), cfg, train, sigma, **kwargs)
    raise ValueError(f"data spec {spec!r}: unknown kind {kind!r} (synth, posetrack, coco, clips, features)")


def build_datasets(specs: list[str], cfg: PoseModelConfig, train: bool, sigma: float = 3.0,
                   augment: bool = True, seed: int | None = None, corrupt_prob: float = 0.75) -> Dataset:
    if not specs:
        raise ValueError("no data given")
    from training.datasets.layouts import same_layout

    parts = [build_dataset(s, cfg, train, sigma, augment, seed, corrupt_prob) for s in specs]
    for spec, part in zip(specs, parts):
        if len(part) == 0:
            raise ValueError(f"data spec {spec!r} has no samples for the {'train' if train else 'val'} split")
    names = {p.layout.name for p in parts}
    if names == {"coco", "posetrack18"}:  # COCO images beside PoseTrack: train in PoseTrack slots
        for part in parts:
            if part.layout.name == "coco":
                _coco_to_posetrack18(part)
    layout = same_layout(p.layout for p in parts)  # any other mix of slot meanings is refused
    if len(parts) == 1:
        return parts[0]
    joined = ConcatDataset(parts)
    joined.layout = layout
    return joined


def _coco_to_posetrack18(dataset) -> None:
    from training.datasets.layouts import POSETRACK18, coco_as_posetrack18

    for sample in dataset.samples:
        sample.keypoints = coco_as_posetrack18(sample.keypoints)
    dataset.layout = POSETRACK18


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Forward the epoch to every part (seeded augmentation depends on it)."""
    for part in getattr(dataset, "datasets", [dataset]):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def collate(items: list[dict]) -> dict:
    """Stack tensors; keep strings and ints as lists."""
    import torch

    out = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out
