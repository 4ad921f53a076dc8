from __future__ import annotations

import cv2
import numpy as np
import pytest

from service.worker.video import InvalidVideo, VideoReader, probe, read_all


@pytest.mark.parametrize("name,size,fps", [("street_walk.mp4", (960, 540), 5.0),
                                           ("soccer.mp4", (1280, 720), 30.0)])
def test_sample_clips_decode(shared_data, name, size, fps):
    info, frames = read_all(shared_data / "videos" / name)
    assert (info.width, info.height) == size
    assert info.fps == pytest.approx(fps)
    assert info.frames == len(frames) == 5
    for i, f in enumerate(frames):
        assert f.index == i
        assert f.rgb.shape == (size[1], size[0], 3) and f.rgb.dtype == np.uint8
        assert f.timestamp_s == pytest.approx(i / fps)


def test_rgb_order(tmp_path):
    # A pure-red clip must come out red in channel 0 (RGB, not OpenCV's BGR).
    path = tmp_path / "red.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        w.write(np.dstack([np.zeros((48, 64)), np.zeros((48, 64)), np.full((48, 64), 255)]).astype(np.uint8))
    w.release()
    _, frames = read_all(path)
    r, g, b = frames[0].rgb.reshape(-1, 3).mean(0)
    assert r > 200 and g < 40 and b < 40


def test_max_frames_caps(shared_data):
    path = shared_data / "videos" / "soccer.mp4"
    assert probe(path, max_frames=3).frames == 3
    info, frames = read_all(path, max_frames=2)
    assert info.frames == 2 and [f.index for f in frames] == [0, 1]


def test_not_a_video(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(InvalidVideo):
        VideoReader(bad)
    with pytest.raises(InvalidVideo):
        VideoReader(tmp_path / "missing.mp4")


def test_truncated_file_counts_what_decodes(shared_data, tmp_path):
    data = (shared_data / "videos" / "street_walk.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    try:
        with VideoReader(cut) as reader:
            frames = list(reader)
    except InvalidVideo:
        return  # the container header did not survive: rejected, which is also correct
    assert 0 < len(frames) == reader.frames_read <= 5
