"""Backbone features cached once, so the temporal path trains on a CPU in minutes, not days.

With the backbone and its single-frame head frozen (`freeze_backbone: single-frame`), a crop's
features never change during training: MoveNet Thunder costs ~35 ms per crop in onnxruntime (and
~250 ms in eager PyTorch on CPU), the temporal encoder a few ms. So every crop the windows need is
encoded once, clean, and each key frame also under `variants` corruptions (training/corruptions.py);
training then mixes clean and corrupted key features per step.

A cache folder (written by `vidpose cache-features`):
    meta.json    checkpoint, its config, clip, labels, split, window, kinds, seed, thresholds
    clean.npy    float16 (N, C, h, w): every (frame, track) crop any window uses, clean
    corrupt.npy  float16 (M, C, h, w): corrupted key crops
    index.json   per key sample: frame, track, window rows into clean.npy, corrupt rows + kinds,
                 the teacher's joint weights, the PCK threshold in heatmap cells
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from model.backbones import entry, input_spec
from model.checkpoint import load_checkpoint
from model.heatmaps import box_to_center_size, crop_affine, warp_crop
from training.corruptions import EXTRA_KINDS, KINDS, corrupt
from training.datasets.teacher import key_samples, load_labels, split_frames

PCK_ALPHA = 0.1  # PCK@0.1: a joint is right within 0.1 x the longer side of the person's box


def read_frames(video: str | Path, frames: set[int]) -> dict[int, np.ndarray]:
    """The wanted frames of a clip as RGB uint8 (decoded in order, like the service's reader)."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {video}")
    out, i, last = {}, 0, max(frames)
    while i <= last:
        ok, bgr = cap.read()
        if not ok:
            break
        if i in frames:
            out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    missing = frames - set(out)
    if missing:
        raise ValueError(f"{video}: {len(missing)} labelled frames could not be decoded "
                         f"(first {min(missing)})")
    return out


def crop(image: np.ndarray, box, spec) -> np.ndarray:
    """The service's crop of one person: box grown 25 % to the input aspect, then the backbone's
    normalisation -> (3, H, W) float32."""
    size = tuple(spec.size)
    center, wh = box_to_center_size(box, size)
    return spec.normalize(warp_crop(image, crop_affine(center, wh, size), size))


def _patch(image: np.ndarray, box) -> np.ndarray:
    """The pixels of a COCO xywh box (at least 2x2; an 8x8 corner when the box is off the image)."""
    x, y, bw, bh = (int(round(v)) for v in box)
    patch = image[max(y, 0):max(y + bh, y + 2), max(x, 0):max(x + bw, x + 2)]
    return patch if patch.size else image[:8, :8]


def _encoder(model, device: str, threads: int):
    if device == "cpu" and entry(model.cfg).cpu_runtime == "onnxruntime":
        from model.ort_backbone import OrtBackbone

        return OrtBackbone(model.backbone, tuple(model.cfg.input_size), threads=threads)
    return lambda x: model.encode_frames(x.to(device)).float().cpu()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_cache(checkpoint: str | Path, video: str | Path, labels_path: str | Path, out: str | Path,
                split: str = "train", variants: int = 2, kinds: tuple[str, ...] = KINDS, seed: int = 0,
                val_fraction: float = 0.2, min_score: float = 0.3, min_joints: int = 8, key_every: int = 1,
                threads: int = 2, device: str = "cpu", batch: int = 32, progress: bool = True) -> dict:
    """Encode the crops of one clip's `split` into a cache folder; returns its meta. The corrupted key
    frames: corrupted_keys."""
    kinds = tuple(dict.fromkeys(kinds))  # distinct kinds per key frame: a kind named twice counts once
    unknown = [k for k in kinds if k not in KINDS + EXTRA_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown corruption kinds {unknown}; choose from {', '.join(KINDS + EXTRA_KINDS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, meta = load_checkpoint(checkpoint, map_location=device)
    model.eval()
    cfg = model.cfg
    spec = input_spec(cfg)
    labels = load_labels(labels_path)
    samples = key_samples(labels, split_frames(labels.num_frames, split, val_fraction), cfg.window,
                          min_score, min_joints, key_every)
    if not samples:
        raise ValueError(f"{labels_path}: no confident key samples in the {split} split")
    rows: dict[tuple[int, int], int] = {}
    for s in samples:
        for f in s.window:
            rows.setdefault((f, s.track), len(rows))
    images = read_frames(video, {f for f, _ in rows})
    encode = _encoder(model, device, threads)
    h, w = cfg.heatmap_size
    c = entry(cfg).feature_channels(cfg)
    order = sorted(rows, key=rows.get)
    n_corrupt = len(samples) * (1 if split == "val" else variants)
    clean = np.lib.format.open_memmap(out / "clean.npy", "w+", np.float16, (len(order), c, h, w))
    bad = np.lib.format.open_memmap(out / "corrupt.npy", "w+", np.float16, (max(n_corrupt, 1), c, h, w))

    def flush(memmap, start: int, crops: list[np.ndarray]) -> int:
        with torch.no_grad():
            feats = encode(torch.from_numpy(np.stack(crops)))
        memmap[start:start + len(crops)] = feats.numpy().astype(np.float16)
        return start + len(crops)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(order) + n_corrupt, desc=f"cache {split}", unit="crop", dynamic_ncols=True)
    done, pending = 0, []
    for key in order:
        pending.append(crop(images[key[0]], labels.boxes[key], spec))
        if len(pending) == batch:
            done = flush(clean, done, pending)
            bar and bar.update(len(pending))
            pending = []
    if pending:
        done = flush(clean, done, pending)
        bar and bar.update(len(pending))

    index, done, pending = [], 0, []
    entry_rows: list[int] = []
    entry_kinds: list[str] = []
    for i, kind, bad_image in corrupted_keys(samples, images, labels, kinds, split, variants, seed):
        if kind is None:  # sample i's variants are all out: its index entry
            s = samples[i]
            key = (s.frame, s.track)
            box = labels.boxes[key]
            _, wh = box_to_center_size(box, tuple(cfg.input_size))
            thr_cells = PCK_ALPHA * max(box[2], box[3]) * w / wh[0]  # image px -> heatmap cells
            weights = (labels.keypoints[key][:, 2] >= min_score).astype(np.float32)
            index.append({"frame": s.frame, "track": s.track,
                          "window": [rows[(f, s.track)] for f in s.window],
                          "corrupt": entry_rows, "kinds": entry_kinds, "weights": weights.tolist(),
                          "pck_threshold": float(thr_cells)})
            entry_rows, entry_kinds = [], []
            continue
        s = samples[i]
        pending.append(crop(bad_image, labels.boxes[(s.frame, s.track)], spec))
        entry_rows.append(done + len(pending) - 1)
        entry_kinds.append(kind)
        if len(pending) == batch:
            done = flush(bad, done, pending)
            bar and bar.update(len(pending))
            pending = []
    if pending:
        done = flush(bad, done, pending)
        bar and bar.update(len(pending))
    if bar:
        bar.close()
    clean.flush()
    bad.flush()
    info = {"checkpoint": str(checkpoint), "checkpoint_sha256": _sha256(Path(checkpoint)),
            "config": cfg.to_dict(), "video": str(video), "labels": str(labels_path), "split": split,
            "val_fraction": val_fraction, "window": cfg.window,
            # as asked, plus "drop" where a one-frame track had no neighbour to "repeat"
            "kinds": list(dict.fromkeys([*kinds, *(k for e in index for k in e["kinds"])])),
            "variants": variants,
            "seed": seed, "min_score": min_score, "min_joints": min_joints, "key_every": key_every,
            "samples": len(index),
            "crops": len(order), "corrupt_crops": done, "keypoint_names": labels.keypoint_names}
    (out / "index.json").write_text(json.dumps(index))
    (out / "meta.json").write_text(json.dumps(info, indent=1))
    return info


def corrupted_keys(samples, images: dict[int, np.ndarray], labels, kinds: tuple[str, ...], split: str,
                   variants: int, seed: int):
    """The corrupted key frames of a cache, in its order: (i, kind, image) for each variant of sample i,
    then (i, None, None) once sample i is done. The same arguments give the same images (one rng,
    drawn in this order), so an evaluation can rebuild a cache's corrupted frames from the clip.

    split "val" gets exactly one corruption per key sample, the kinds in turn (a balanced, fixed test
    set); "train"/"all" get `variants` distinct kinds per key sample, drawn at random."""
    rng = np.random.default_rng(seed)
    tracks_at: dict[int, list[int]] = {}  # confident people only: NanoDet's tracks include a sign or two
    for s in samples:
        tracks_at.setdefault(s.frame, []).append(s.track)
    for i, s in enumerate(samples):
        key = (s.frame, s.track)
        t = len(s.window)
        others = [f for f in s.window[t // 2 - 1:t // 2 + 2] if f != s.frame]
        if split == "val":
            chosen = [kinds[i % len(kinds)]]
        else:
            chosen = list(rng.choice(kinds, size=min(variants, len(kinds)), replace=False))
        for kind in chosen:
            if kind == "repeat" and not others:
                kind = "drop"  # a one-frame track has no neighbour to repeat
            donor = None
            near = [t for t in tracks_at.get(s.frame, []) if t != s.track] if kind == "cross" else []
            if near:  # cross: someone else in the same frame (same light, same scale of people)
                other = near[int(rng.integers(len(near)))]
                donor = _patch(images[s.frame], labels.boxes[(s.frame, other)])
            elif kind in ("occlude_person", "cross"):  # a key person from anywhere in the split
                d = samples[int(rng.integers(len(samples)))]
                donor = _patch(images.get(d.frame, images[s.frame]), labels.boxes[(d.frame, d.track)])
            neighbour = images[others[int(rng.integers(len(others)))]] if kind == "repeat" else None
            yield i, kind, corrupt(kind, images[s.frame], labels.boxes[key], rng, donor=donor,
                                   neighbour=neighbour)
        yield i, None, None
