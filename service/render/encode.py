"""H.264 mp4 writer (PyAV/libx264) that browsers can play and start before the download ends."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# Speed over size: overlays are rendered on request by the API process.
X264_OPTIONS = {"preset": "veryfast", "crf": "23"}
DEFAULT_FPS = 25.0


def frame_rate(fps: float | None) -> Fraction:
    """A rational frame rate for the container (29.97 -> 30000/1001); DEFAULT_FPS when unknown."""
    if fps is None or not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = DEFAULT_FPS
    return Fraction(fps).limit_denominator(1001)


class H264Writer:
    """Writes BGR frames of one size to an mp4 (yuv420p, even dimensions, moov atom first)."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float | None):
        # yuv420p needs even dimensions: odd frames get one replicated row/column (nothing is cropped).
        self.pad_w, self.pad_h = width % 2, height % 2
        self.width, self.height = width + self.pad_w, height + self.pad_h
        # +faststart moves the index to the front so a browser can play (and seek) while downloading.
        self.container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            self.stream = self.container.add_stream("libx264", rate=frame_rate(fps))
            self.stream.width, self.stream.height = self.width, self.height
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = dict(X264_OPTIONS)
        except Exception:
            self.container.close()
            raise
        self.frames = 0

    def write(self, bgr: np.ndarray) -> None:
        if self.pad_w or self.pad_h:
            bgr = cv2.copyMakeBorder(bgr, 0, self.pad_h, 0, self.pad_w, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts = self.frames
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        try:
            for packet in self.stream.encode():  # flush the encoder's delayed frames
                self.container.mux(packet)
        finally:
            self.container.close()

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
