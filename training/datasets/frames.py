"""Reading frames: RGB decode with a small byte-bounded LRU cache.

Windows overlap (each frame is in T windows, and several people share a
frame), so a cache of recently decoded frames saves most decodes when samples
are read in order (validation) and costs nothing when they are shuffled.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np


def read_rgb(path: str | Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FrameCache:
    """LRU of decoded RGB frames keyed by path, bounded by total bytes."""

    def __init__(self, max_bytes: int = 128 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, path: str | Path) -> np.ndarray:
        key = str(path)
        image = self._items.get(key)
        if image is not None:
            self._items.move_to_end(key)
            return image
        image = read_rgb(key)
        if self.max_bytes > 0 and image.nbytes <= self.max_bytes:
            self._items[key] = image
            self._bytes += image.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return image

    def __getstate__(self):  # DataLoader workers start with an empty cache
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state["max_bytes"])
