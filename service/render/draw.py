"""Drawing one frame's poses: limbs, joints, box and id label, one colour per track (OpenCV, BGR)."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import cv2
import numpy as np

_GOLDEN = 0.618033988749895  # hue step: consecutive track ids get far-apart hues


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour for a track id, distinct for neighbouring ids and the same on every frame."""
    hue = (0.07 + int(track_id) * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def _point(kp: Sequence[float], min_score: float) -> tuple[int, int] | None:
    """Pixel position of a keypoint [x, y, score] worth drawing, else None."""
    if len(kp) < 3:
        return None
    x, y, s = (float(v) for v in kp[:3])
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(s)) or s < min_score:
        return None
    return round(x), round(y)


def draw_instances(bgr: np.ndarray, instances: Sequence[dict], skeleton: Sequence[Sequence[int]],
                   min_score: float) -> np.ndarray:
    """Draw every instance onto `bgr` in place (and return it). Keypoints scoring under min_score are
    hidden, and so is every limb with such an end; the box and its "id N" label are always drawn."""
    h, w = bgr.shape[:2]
    thick = max(2, round(min(h, w) / 240))
    radius = thick + 1
    font_scale = max(0.4, min(h, w) / 900)
    for inst in instances:
        track_id = inst.get("track_id")
        colour = track_colour(track_id if isinstance(track_id, int) else 0)
        points = [_point(kp, min_score) for kp in inst.get("keypoints") or []]
        for a, b in skeleton:
            if a < len(points) and b < len(points) and points[a] is not None and points[b] is not None:
                cv2.line(bgr, points[a], points[b], colour, thick, cv2.LINE_AA)
        for p in points:
            if p is not None:
                cv2.circle(bgr, p, radius, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.circle(bgr, p, max(1, radius - 1), colour, -1, cv2.LINE_AA)
        bbox = inst.get("bbox")
        if bbox and len(bbox) == 4 and all(math.isfinite(float(v)) for v in bbox):
            x, y, bw, bh = (round(float(v)) for v in bbox)
            cv2.rectangle(bgr, (x, y), (x + bw, y + bh), colour, max(1, thick // 2))
            if track_id is not None:
                label = f"id {track_id}"
                (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
                ty = max(y, th + base)  # keep the label inside the frame at the top edge
                cv2.rectangle(bgr, (x, ty - th - base), (x + tw + 2, ty), colour, -1)
                cv2.putText(bgr, label, (x + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                            1, cv2.LINE_AA)
    return bgr
