"""Which frames make a person's T-frame window, and when its key frame is cropped again: the rules the
service and training share.

For key frame t of a track the window is frames t-h..t+h (h = T//2), clamped to the run of frames
where that track exists: a person entering or leaving repeats the nearest frame they are in, so a
window never reaches into frames without them. Each frame of a window is cropped with that frame's
own box of the track.

Re-crop (`PoseModelConfig.recrop_drop`): where the key frame's own single-frame confidence drops well
below that of both outermost neighbours, the tracked box of the key frame is usually what went wrong
(it spans two people, grew over someone passing, or jumped onto a sign; docs/results.md#temporal-path),
so the key frame is cropped again at the mean of the neighbours' boxes and decoded from that crop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def clamp_window(key: int, half: int, present: Callable[[int], bool]) -> list[int]:
    """Frames key-half..key+half, each offset walked back toward `key` until it stays
    inside the contiguous run of frames where `present(frame)` holds."""
    out = []
    for d in range(-half, half + 1):
        step = 1 if d > 0 else -1
        f = key
        for _ in range(abs(d)):
            if not present(f + step):
                break
            f += step
        out.append(f)
    return out


def wants_recrop(key_confidence: float, before: float, after: float, drop: float,
                 min_confidence: float = 0.0) -> bool:
    """The key frame's confidence (mean single-frame joint score) is below `drop` x that of both
    outermost neighbours, which are both at least `min_confidence` (drop <= 0: never)."""
    sure = min(before, after)
    return drop > 0 and sure >= min_confidence and key_confidence < drop * sure


def recrop_box(before: Sequence[float], after: Sequence[float]) -> tuple[float, float, float, float]:
    """The box the key frame is cropped again at: the mean of the outermost neighbours' (x, y, w, h)."""
    mean = (np.asarray(before, np.float64) + np.asarray(after, np.float64)) / 2.0
    return tuple(float(v) for v in mean)
