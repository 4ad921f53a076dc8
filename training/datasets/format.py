"""Small torch-free helpers for PoseTrack18-format dicts (shared by loaders and evaluation)."""

from __future__ import annotations

import numpy as np


def ignore_regions(image: dict) -> list[np.ndarray]:
    """An image's ignore-region polygons as (n, 2) arrays (regions under 3 points are skipped)."""
    xs_all = image.get("ignore_regions_x") or []
    ys_all = image.get("ignore_regions_y") or []
    if len(xs_all) != len(ys_all):
        raise ValueError(f"image {image.get('id')}: ignore_regions_x/y differ in length")
    return [np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=1)
            for xs, ys in zip(xs_all, ys_all, strict=True) if len(xs) >= 3 and len(xs) == len(ys)]
