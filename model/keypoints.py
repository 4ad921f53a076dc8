"""COCO-17 keypoint names, skeleton and left/right flip pairs (0-based); the PoseTrack18 slot names and
the COCO -> PoseTrack18 conversion (torch-free: the service and training both use it)."""

from __future__ import annotations

import numpy as np

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# PoseTrack18 reuses COCO's 17 slots with head_bottom / head_top in slots 1 / 2 and the ear slots
# unlabelled (training/datasets/layouts.py explains the layouts).
POSETRACK18_KEYPOINTS: tuple[str, ...] = (
    "nose", "head_bottom", "head_top", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# Limbs as index pairs (COCO's skeleton, converted to 0-based).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
    (3, 5), (4, 6),
)

# Joints that swap under a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)


def flip_permutation(num_keypoints: int = 17) -> list[int]:
    """perm[i] = index of the joint that lands in slot i after a horizontal flip."""
    perm = list(range(num_keypoints))
    for a, b in FLIP_PAIRS:
        if a < num_keypoints and b < num_keypoints:
            perm[a], perm[b] = b, a
    return perm


def coco_to_posetrack18(kps: np.ndarray) -> np.ndarray:
    """(..., 17, 3) COCO-17 predictions -> PoseTrack18 slots, for scoring a COCO model on PoseTrack.

    PoseTrack's head_bottom (base of the head) and head_top have no COCO joint. They are placed from
    the head COCO does have: head_bottom halfway between the shoulders' and the ears' midpoints,
    head_top beyond the eyes' midpoint by 0.3 x (eyes - shoulders midpoints). Their score is the
    smallest of the joints they come from. The ear slots (PoseTrack leaves them unlabelled) are
    zeroed. The 0.3 was picked among {0.3, 0.5} on the PoseTrack18 sample (docs/results.md).
    """
    out = np.array(kps, dtype=np.float64, copy=True)
    shoulders = (out[..., 5, :2] + out[..., 6, :2]) / 2
    ears = (out[..., 3, :2] + out[..., 4, :2]) / 2
    eyes = (out[..., 1, :2] + out[..., 2, :2]) / 2
    score = np.minimum.reduce([out[..., i, 2] for i in (1, 2, 3, 4, 5, 6)])
    out[..., 1, :2] = (shoulders + ears) / 2
    out[..., 2, :2] = eyes + 0.3 * (eyes - shoulders)
    out[..., 1, 2] = score
    out[..., 2, 2] = score
    out[..., 3:5, :] = 0.0
    return out
