"""Cheap check of an uploaded clip with OpenCV (no torch): decodable? size, fps, frame count.

Only the first frame is decoded. The container's frame count is trusted when it
reports one; otherwise (some webm/mkv files) frames are counted by grabbing, up
to `count_limit + 1` so a huge clip cannot stall the API. The worker counts the
frames it actually decodes and corrects the job's frames_total when it starts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path


class InvalidVideo(ValueError):
    """Not a decodable video, or no frames (HTTP 422, code invalid_video)."""


@dataclass(frozen=True)
class VideoProbe:
    width: int
    height: int
    fps: float
    frames: int

    def to_dict(self) -> dict:
        return asdict(self)


def probe_video(path: str | Path, count_limit: int) -> VideoProbe:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InvalidVideo("not a decodable video: OpenCV/FFmpeg could not open the file")
        ok, frame = cap.read()
        if not ok or frame is None or frame.size == 0:
            raise InvalidVideo("the video has no decodable frames")
        height, width = frame.shape[:2]
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 0.0  # unknown: timestamps cannot be derived
        reported = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if reported and math.isfinite(reported) and reported >= 1:
            frames = int(reported)
        else:
            frames = 1
            while frames <= count_limit and cap.grab():
                frames += 1
        return VideoProbe(width=int(width), height=int(height), fps=fps, frames=frames)
    finally:
        cap.release()
