"""The two accepted shapes of client person boxes, unpacked once for the API and the worker.

`options.boxes` is a list indexed by frame (`boxes[i]` = the boxes of frame i) or an
object keyed by frame index (`{"0": [...], "7": [...]}`). Torch-free: the API imports it.
"""

from __future__ import annotations

from typing import Any


def frame_box_lists(raw: Any) -> list[tuple[int, list]]:
    """-> [(frame_index, [raw box, ...])] for frames that list boxes; ValueError names the bad part."""
    if isinstance(raw, list):
        items = list(enumerate(raw))
    elif isinstance(raw, dict):
        items = []
        for key, value in raw.items():
            try:
                items.append((int(key), value))
            except (TypeError, ValueError):
                raise ValueError(f"frame key {key!r} is not an integer") from None
    else:
        raise ValueError("boxes must be a list (one entry per frame) or an object keyed by frame index")
    out = []
    for frame, boxes in items:
        if frame < 0:
            raise ValueError(f"negative frame index {frame}")
        if boxes is None:
            continue
        if not isinstance(boxes, list):
            raise ValueError(f"boxes[{frame}] must be a list of boxes")
        out.append((frame, boxes))
    return out
