"""PCK / PCKh: fraction of labelled joints within `thr` x a per-person length.

    pckh(pred (N,K,2), gt (N,K,3), head_sizes (N,), thr=0.5) -> PCKResult

`gt[..., 2] > 0` marks labelled joints; `head_sizes` are poseval's head size,
0.6 x the GT head-box diagonal (training.datasets items carry it as
`head_size`), so pckh(..., thr=0.5) is exactly PoseTrack's per-joint
correctness for a person already matched to its GT. People with a
non-positive normaliser are left out. `mask` (N,K) selects joints further
(e.g. only the occluded ones). Accepts numpy arrays or torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass
class PCKResult:
    correct: np.ndarray  # (N, K) bool: within the threshold (only meaningful where valid)
    valid: np.ndarray  # (N, K) bool: labelled, selected, normaliser > 0
    per_joint: np.ndarray  # (K,) fraction correct per joint, NaN where a joint has no valid entry
    mean: float  # fraction over all valid joints (NaN if none)
    count: int  # number of valid joints


def pck(pred, gt, norm, thr: float, mask=None) -> PCKResult:
    """Correct iff ||pred - gt|| <= thr * norm[n]."""
    pred, gt, norm = _np(pred), _np(gt), _np(norm).reshape(-1)
    if pred.shape[:2] != gt.shape[:2] or len(norm) != len(gt):
        raise ValueError(f"shape mismatch: pred {pred.shape}, gt {gt.shape}, norm {norm.shape}")
    valid = (gt[..., 2] > 0) & (norm[:, None] > 0)
    if mask is not None:
        valid &= _np(mask).astype(bool)
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    correct = dist <= thr * norm[:, None]
    hits = (correct & valid).sum(axis=0)
    counts = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    total = int(valid.sum())
    return PCKResult(correct, valid, per_joint, float(hits.sum() / total) if total else float("nan"), total)


def head_sizes(head_boxes) -> np.ndarray:
    """(N, 4) xywh head boxes -> (N,) poseval head sizes (0.6 x diagonal)."""
    hb = _np(head_boxes).reshape(-1, 4)
    return 0.6 * np.hypot(hb[:, 2], hb[:, 3])


def pckh(pred, gt, head_sizes, thr: float = 0.5, mask=None) -> PCKResult:
    """PCKh@thr with poseval's head size (see module doc)."""
    return pck(pred, gt, head_sizes, thr, mask)


def pck_bbox(pred, gt, boxes, thr: float = 0.05, mask=None) -> PCKResult:
    """PCK normalised by the longer side of each person's box (for data without head boxes)."""
    b = _np(boxes).reshape(-1, 4)
    return pck(pred, gt, np.maximum(b[:, 2], b[:, 3]), thr, mask)
