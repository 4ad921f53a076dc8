"""Which frames make a person's T-frame window: the one rule the service and training share.

For key frame t of a track the window is frames t-h..t+h (h = T//2), clamped to the run of frames
where that track exists: a person entering or leaving repeats the nearest frame they are in, so a
window never reaches into frames without them. Each frame of a window is cropped with that frame's
own box of the track.
"""

from __future__ import annotations

from collections.abc import Callable


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
