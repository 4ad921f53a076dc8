"""COCO-17 keypoint names, skeleton and left/right flip pairs (0-based)."""

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
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
