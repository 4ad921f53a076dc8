"""Run a model over a window dataset and map its keypoints back to image pixels.

Shared by the trainer's validation and `vidpose eval --checkpoint`, so the
numbers a run reports and the numbers eval reports come from the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from model.heatmaps import apply_affine, heatmap_to_input, invert_affine
from training.data import collate
from training.evaluate.pck import pck_bbox, pckh


@dataclass
class Predictions:
    keypoints: np.ndarray  # (N, K, 3) final heatmaps -> image pixels + score
    base_keypoints: np.ndarray  # (N, K, 3) single-frame (base) heatmaps -> image pixels + score
    gt: np.ndarray  # (N, K, 3) GT in image pixels
    occluded: np.ndarray  # (N, K)
    head_size: np.ndarray  # (N,)
    box: np.ndarray  # (N, 4)
    meta: list[dict]  # per item: video, file_name, image_id, frame_id, track_id


def heatmap_points_to_image(kps_hm: np.ndarray, affine: np.ndarray, stride: float) -> np.ndarray:
    """(K, 3) heatmap cells -> image pixels through the inverse of the item's crop affine."""
    return apply_affine(heatmap_to_input(kps_hm, stride), invert_affine(affine))


@torch.inference_mode()
def predict(model, dataset: Dataset, batch_size: int = 16, device: str | torch.device = "cpu",
            num_workers: int = 0, seed: int = 0, amp_dtype: torch.dtype | None = None,
            diffusion_steps: int | None = None, hypotheses: int | None = None) -> Predictions:
    """diffusion_steps / hypotheses override the model's S / K (S = 0: the deterministic head)."""
    cfg = model.cfg
    stride = cfg.input_size[1] / cfg.heatmap_size[1]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate)
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)  # diffusion noise: reproducible numbers
    out: dict[str, list] = {k: [] for k in ("kp", "base", "gt", "occ", "head", "box", "meta")}
    try:
        for batch in loader:
            frames = batch["frames"].to(device)
            with torch.autocast(device_type=torch.device(device).type, dtype=amp_dtype,
                                enabled=amp_dtype is not None):
                b, t = frames.shape[:2]  # the serving path: per-frame features, then windows
                feats = model.encode_frames(frames.flatten(0, 1)).unflatten(0, (b, t))
                res = model.decode_windows(feats, generator=gen, diffusion_steps=diffusion_steps,
                                           hypotheses=hypotheses)
            kp = model.decode_keypoints(res).cpu().numpy()
            base = model.decode_keypoints(res, base=True).cpu().numpy()
            affines = batch["affine"].numpy().astype(np.float64)
            for i in range(len(affines)):
                out["kp"].append(heatmap_points_to_image(kp[i], affines[i], stride))
                out["base"].append(heatmap_points_to_image(base[i], affines[i], stride))
                out["meta"].append({k: batch[k][i] for k in ("video", "file_name", "image_id", "frame_id",
                                                             "track_id")})
            out["gt"].append(batch["keypoints"].numpy())
            out["occ"].append(batch["occluded"].numpy())
            out["head"].append(batch["head_size"].numpy())
            out["box"].append(batch["box"].numpy())
    finally:
        model.train(was_training)
    return Predictions(np.stack(out["kp"]), np.stack(out["base"]), np.concatenate(out["gt"]),
                       np.concatenate(out["occ"]), np.concatenate(out["head"]),
                       np.concatenate(out["box"]), out["meta"])


def pck_summary(p: Predictions, thr: float = 0.5) -> dict:
    """PCKh@thr where head boxes exist, else PCK@0.05 of the box's longer side (COCO)."""

    def score(kps: np.ndarray, mask=None) -> float:
        has_head = p.head_size > 0
        hits = total = 0
        if has_head.any():
            r = pckh(kps[has_head], p.gt[has_head], p.head_size[has_head], thr,
                     None if mask is None else mask[has_head])
            hits += (r.correct & r.valid).sum()
            total += r.count
        if (~has_head).any():
            r = pck_bbox(kps[~has_head], p.gt[~has_head], p.box[~has_head], 0.05,
                         None if mask is None else mask[~has_head])
            hits += (r.correct & r.valid).sum()
            total += r.count
        return float(hits / total) if total else float("nan")

    occ = p.occluded > 0
    return {
        "pck": score(p.keypoints),
        "pck_base": score(p.base_keypoints),
        "pck_occluded": score(p.keypoints, occ) if occ.any() else float("nan"),
        "pck_base_occluded": score(p.base_keypoints, occ) if occ.any() else float("nan"),
        "num_people": int(len(p.gt)),
    }
