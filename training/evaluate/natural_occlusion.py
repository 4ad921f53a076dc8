"""Natural occlusion on real video: frames where the teacher's own confidence drops for a tracked person.

No corruption is pasted here. In a held-out feature cache (training/feature_cache.py) we look for a
track's frame f whose clean-frame teacher confidence (mean joint score) falls below `drop` x that of
frames f-gap and f+gap -- someone walking behind a lamp post or another person -- while both of those
are confident. The target of each joint confident in both neighbours is the midpoint of the teacher's
keypoints there (image pixels; people move little in 2 x gap frames at 10 fps), mapped into frame f's
crop. Single-frame (base) and temporal predictions on frame f's natural window are scored by PCK@0.1.

Two figures say how far the score can go: `target_agreement` scores the teacher's own keypoints at f
against the same midpoint target on the split's frames that are NOT drops (where the teacher can be
trusted): the most a perfect model could score, since the midpoint of t-2 and t+2 is not where a
fast-moving ankle is at t. "either" in `evaluate_drops` counts a joint right when base or temporal
is: the most a per-joint choice between the two branches (like the keep rule) could score.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.heatmaps import apply_affine, box_to_center_size, crop_affine, input_to_heatmap
from model.windows import clamp_window
from training.datasets.teacher import load_labels, split_frames
from training.evaluate.recrop import CacheRecrop, cache_rows
from training.feature_cache import PCK_ALPHA, crop, read_frames


def _rows(meta: dict, labels) -> dict[tuple[int, int], int]:
    """(frame, track) -> row of clean.npy, rebuilt exactly as build_cache laid it out."""
    return cache_rows(meta, labels)[1]


def _teacher(cache: Path):
    """A cache's meta, its teacher labels, and the teacher's mean joint confidence per (frame, track)."""
    meta = json.loads((cache / "meta.json").read_text())
    labels = load_labels(meta["labels"])
    return meta, labels, {k: float(v[:, 2].mean()) for k, v in labels.keypoints.items()}


def _is_drop(conf: dict, f: int, track: int, drop: float, gap: int) -> bool:
    return conf[(f, track)] < drop * min(conf[(f - gap, track)], conf[(f + gap, track)])


def _sure_neighbours(labels, f: int, track: int, gap: int, min_score: float, min_joints: int):
    """The teacher's keypoints at f-gap and f+gap when both have >= min_joints confident joints, else None."""
    kb, ka = labels.keypoints.get((f - gap, track)), labels.keypoints.get((f + gap, track))
    if kb is None or ka is None or min(int((k[:, 2] >= min_score).sum()) for k in (kb, ka)) < min_joints:
        return None
    return kb, ka


def drop_windows(cache: str | Path, drop: float = 0.7, gap: int = 2) -> list[dict]:
    """The natural-occlusion test windows of a cache: rows (T,), target (K, 3) heatmap cells + weight,
    PCK threshold (cells), frame, track."""
    meta, labels, conf = _teacher(Path(cache))
    rows = _rows(meta, labels)
    size = tuple(meta["config"]["input_size"])
    hm_w = meta["config"]["heatmap_size"][1]
    stride = size[1] / hm_w
    min_score, half = meta["min_score"], meta["window"] // 2
    out = []
    for (f, track) in sorted(rows):
        before, after = (f - gap, track), (f + gap, track)
        if before not in labels.boxes or after not in labels.boxes:
            continue
        if not _is_drop(conf, f, track, drop, gap):
            continue
        sure = _sure_neighbours(labels, f, track, gap, min_score, meta["min_joints"])
        if sure is None:
            continue
        kb, ka = sure
        window = clamp_window(f, half, lambda g, t=track: (g, t) in rows)
        box = labels.boxes[(f, track)]
        center, wh = box_to_center_size(box, size)
        crop_pts = apply_affine((kb[:, :2] + ka[:, :2]) / 2.0, crop_affine(center, wh, size))
        target = np.zeros((len(kb), 3), np.float32)
        target[:, :2] = input_to_heatmap(crop_pts, stride)
        target[:, 2] = (kb[:, 2] >= min_score) & (ka[:, 2] >= min_score)
        out.append({"rows": [rows[(g, track)] for g in window], "target": target, "frame": f, "track": track,
                    "pck_threshold": PCK_ALPHA * max(box[2], box[3]) * hm_w / wh[0]})
    return out


def target_agreement(cache: str | Path, drop: float = 0.7, gap: int = 2) -> dict:
    """PCK@0.1 (%) of the teacher at f against the midpoint of its keypoints at f-gap and f+gap, on the
    cache split's frames that are not drops (joints confident at f-gap, f and f+gap): the ceiling of
    the natural-occlusion score. Image pixels, threshold 0.1 x the longer side of f's box."""
    meta, labels, conf = _teacher(Path(cache))
    frames = split_frames(labels.num_frames, meta["split"], meta["val_fraction"])
    min_score = meta["min_score"]
    hits = []
    for (f, track), kps in sorted(labels.keypoints.items()):
        if f - gap not in frames or f + gap not in frames:
            continue
        sure = _sure_neighbours(labels, f, track, gap, min_score, meta["min_joints"])
        if sure is None or _is_drop(conf, f, track, drop, gap):
            continue
        kb, ka = sure
        use = (kb[:, 2] >= min_score) & (ka[:, 2] >= min_score) & (kps[:, 2] >= min_score)
        box = labels.boxes[(f, track)]
        dist = np.linalg.norm(kps[:, :2] - (kb[:, :2] + ka[:, :2]) / 2.0, axis=1)
        hits.append((dist <= PCK_ALPHA * max(box[2], box[3]))[use])
    cat = np.concatenate(hits) if hits else np.zeros(0, bool)
    return {"frames": len(hits), "n_joints": int(len(cat)),
            "pck": round(100.0 * float(cat.mean()), 2) if len(cat) else float("nan")}


@torch.no_grad()
def evaluate_drops(model, cache: str | Path, drop: float = 0.7, gap: int = 2, batch_size: int = 32) -> dict:
    """PCK@0.1 (%) of base and temporal (no diffusion, the model's keep rule) on the natural-occlusion
    windows, and of "either" (a joint right in base or in temporal). With the model's re-crop rule on
    (cfg.recrop_drop > 0): also "base+recrop" and "temporal+recrop", the windows where the rule fires
    decoded from their key frame cropped again, as the worker does (training/evaluate/recrop.py);
    "recrop_fired" counts them."""
    model.eval()
    windows = drop_windows(cache, drop, gap)
    clean = np.load(Path(cache) / "clean.npy", mmap_mode="r")
    hits = {"base": [], "temporal": [], "either": []}
    rc = CacheRecrop(cache, model) if model.cfg.recrop_drop > 0 else None
    images = {}
    if rc is not None:
        hits.update({"base+recrop": [], "temporal+recrop": []})
        images = read_frames(rc.meta["video"], {w["frame"] for w in windows}) if windows else {}
    fired = 0
    for i in range(0, len(windows), batch_size):
        part = windows[i:i + batch_size]
        feats = torch.from_numpy(np.stack([np.asarray(clean[w["rows"]], np.float32) for w in part]))
        target = torch.from_numpy(np.stack([w["target"] for w in part]))
        thr = torch.tensor([w["pck_threshold"] for w in part])
        out = model.decode_windows(feats, diffusion_steps=0)
        right = {}
        for name, base in (("base", True), ("temporal", False)):
            kps = model.decode_keypoints(out, base=base)
            right[name] = torch.linalg.vector_norm(kps[..., :2] - target[..., :2], dim=-1) <= thr[:, None]
        right["either"] = right["base"] | right["temporal"]
        if rc is not None:
            frames = [[rc.frame_of[r] for r in w["rows"]] for w in part]
            tracks = [w["track"] for w in part]
            preds = [model.decode_keypoints(out, base=True), model.decode_keypoints(out)]
            idx = [j for j, f in enumerate(rc.fires(feats, frames)) if f]
            fired += len(idx)
            if idx:
                alt = rc.encode([crop(images[part[j]["frame"]], rc.alt_box(frames[j], tracks[j]), rc.spec)
                                 for j in idx])
                preds[0][idx], preds[1][idx] = rc.decode(feats[idx], alt, [frames[j] for j in idx],
                                                         [tracks[j] for j in idx])
            for name, kps in zip(("base+recrop", "temporal+recrop"), preds, strict=True):
                right[name] = torch.linalg.vector_norm(kps[..., :2] - target[..., :2], dim=-1) <= thr[:, None]
        for name, ok in right.items():
            hits[name].append(ok[target[..., 2] > 0])
    result = {"windows": len(windows), "people": len({(w["track"]) for w in windows})}
    if rc is not None:
        result["recrop_fired"] = fired
    for name, parts in hits.items():
        cat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)
        result["n_joints"] = int(len(cat))
        result[name] = round(100.0 * float(cat.float().mean()), 2) if len(cat) else float("nan")
    return result
