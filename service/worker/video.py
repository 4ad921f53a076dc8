"""Video decoding for the worker: OpenCV from the blob path, streamed frame by frame.

Frames come out as RGB uint8 one at a time, so a long clip is never held in
memory: the window builder keeps only the crops and features that pending
windows still need (see windows.py). `max_frames` caps how many are read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np


class InvalidVideo(ValueError):
    """The file cannot be decoded as a video, or has no frames (job error_code "invalid_video")."""

    code = "invalid_video"


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # frames this job will process (container count, capped by max_frames)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Frame:
    index: int
    timestamp_s: float
    rgb: np.ndarray  # (H, W, 3) uint8


def _open(path: str | Path) -> cv2.VideoCapture:
    if not Path(path).is_file():
        raise InvalidVideo(f"video file not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InvalidVideo("the file could not be opened as a video")
    return cap


def _count_by_grabbing(path: str | Path, limit: int) -> int:
    """Exact frame count by demuxing+decoding without colour conversion (used when the
    container does not state a count)."""
    cap = _open(path)
    n = 0
    try:
        while n < limit and cap.grab():
            n += 1
    finally:
        cap.release()
    return n


class VideoReader:
    """Iterate the frames of a video file; `info` is known before the first frame.

    `info.frames` comes from the container (capped by max_frames). Containers
    can overstate it (truncated files); `frames_read` after iteration is exact.
    """

    def __init__(self, path: str | Path, max_frames: int | None = None):
        self.path = str(path)
        self.max_frames = max_frames if max_frames and max_frames > 0 else None
        self._cap = _open(path)
        self.frames_read = 0
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 0.0  # unknown: timestamps then come from the decoder's clock
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        limit = self.max_frames or 10**9
        if count <= 0:
            count = _count_by_grabbing(path, limit)
        count = min(count, limit)
        if w <= 0 or h <= 0 or count <= 0:
            self.close()
            raise InvalidVideo("the video has no decodable frames")
        self.info = VideoInfo(width=w, height=h, fps=fps, frames=count)

    def __iter__(self) -> Iterator[Frame]:
        limit = self.max_frames or 10**9
        while self.frames_read < limit:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                break
            if self.info.fps > 0:
                ts = self.frames_read / self.info.fps
            else:
                ts = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield Frame(self.frames_read, ts, rgb)
            self.frames_read += 1
        if self.frames_read == 0:
            raise InvalidVideo("the video has no decodable frames")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe(path: str | Path, max_frames: int | None = None) -> VideoInfo:
    with VideoReader(path, max_frames) as reader:
        return reader.info


def read_all(path: str | Path, max_frames: int | None = None) -> tuple[VideoInfo, list[Frame]]:
    """Every frame in memory: for tests and benchmarks on short clips only."""
    with VideoReader(path, max_frames) as reader:
        frames = list(reader)
        info = reader.info
    if len(frames) != info.frames:
        info = VideoInfo(info.width, info.height, info.fps, len(frames))
    return info, frames
