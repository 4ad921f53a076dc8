"""render_overlay on real clips: H.264 that PyAV decodes to the clip's frame count, skeletons where drawn,
untouched pixels where keypoints scored under min_score."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from model.keypoints import COCO_SKELETON
from service.render.draw import track_colour
from service.render.overlay import RenderError, missing_frames, render_overlay

LEFT_WRIST, RIGHT_WRIST = 9, 10
WRISTS = {LEFT_WRIST: (700, 200), RIGHT_WRIST: (700, 330)}


def clip_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            return frames
        frames.append(f)


def decode(path) -> tuple[av.container.InputContainer, list[np.ndarray]]:
    container = av.open(str(path))
    frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return container, frames


def person(track_id: int, wrist_score: float) -> dict:
    """Keypoints in a column at x=200 (score 0.9), except both wrists far right, scoring wrist_score."""
    kps = [[200.0 + 20 * (k % 2), 80.0 + 22 * k, 0.9] for k in range(17)]
    for k, (x, y) in WRISTS.items():
        kps[k] = [float(x), float(y), wrist_score]
    return {"track_id": track_id, "bbox": [150.0, 60.0, 120.0, 400.0], "score": 0.9, "keypoints": kps}


def result_for(frames: dict[int, list[dict]], video: dict | None = None) -> dict:
    return {"job_id": "x", "video": video or {"width": 960, "height": 540, "fps": 5.0, "frames": 5},
            "skeleton": [list(p) for p in COCO_SKELETON],
            "frames": [{"frame_index": i, "timestamp_s": i / 5, "instances": inst}
                       for i, inst in frames.items()]}


def patch_diff(a: np.ndarray, b: np.ndarray, x: int, y: int, r: int = 6) -> float:
    return float(np.abs(a[y - r:y + r + 1, x - r:x + r + 1].astype(int)
                        - b[y - r:y + r + 1, x - r:x + r + 1].astype(int)).mean())


@pytest.fixture(scope="module")
def street(shared_data):
    return shared_data / "videos" / "street_walk.mp4"


def test_overlay_is_h264_with_every_clip_frame(street, tmp_path):
    out = tmp_path / "o.mp4"
    source = clip_frames(street)
    # Poses for frames 1 and 3 only: the others are written unchanged, none dropped.
    n = render_overlay(result_for({1: [person(0, 0.9)], 3: [person(4, 0.9)]}), street, out)
    assert n == len(source) == 5
    container, frames = decode(out)
    stream = container.streams.video[0]
    assert stream.codec_context.name == "h264" and stream.codec_context.format.name == "yuv420p"
    assert (stream.width, stream.height) == (960, 540) and float(stream.average_rate) == 5.0
    assert len(frames) == len(source)
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: index first, browsers start at once
    # Frames without poses: only compression noise; frames with poses: changed where the limbs are.
    assert float(np.abs(frames[0].astype(int) - source[0].astype(int)).mean()) < 4
    assert patch_diff(frames[1], source[1], 200, 80 + 22 * 5, r=3) > 30
    assert patch_diff(frames[2], source[2], 200, 80 + 22 * 5, r=3) < 8


def test_low_score_keypoints_and_their_limbs_are_hidden(street, tmp_path):
    source = clip_frames(street)
    hidden, shown = tmp_path / "hidden.mp4", tmp_path / "shown.mp4"
    result = result_for({0: [person(7, 0.2)]})
    render_overlay(result, street, hidden, min_score=0.3)
    render_overlay(result, street, shown, min_score=0.1)
    _, h = decode(hidden)
    _, s = decode(shown)
    wrist = WRISTS[LEFT_WRIST]
    elbow_to_wrist = ((220 + wrist[0]) // 2, (80 + 22 * 7 + wrist[1]) // 2)  # middle of limb 7-9
    for x, y in (wrist, elbow_to_wrist):
        assert patch_diff(h[0], source[0], x, y, r=2) < 8, (x, y)  # under min_score: untouched
        assert patch_diff(s[0], source[0], x, y, r=2) > 30, (x, y)  # same pose, lower min_score: drawn
    # The confident keypoints are drawn in both, in this track's colour.
    nose = (200, 80)
    assert patch_diff(h[0], source[0], *nose, r=2) > 30
    colour = np.array(track_colour(7))
    near = h[0][nose[1] - 8:nose[1] + 9, nose[0] - 8:nose[0] + 9].reshape(-1, 3).astype(int)
    assert np.abs(near - colour).sum(axis=1).min() < 60


def test_distinct_colours_per_track():
    colours = [track_colour(i) for i in range(12)]
    assert len(set(colours)) == 12 and track_colour(3) == track_colour(3)
    for a in range(12):
        for b in range(a + 1, min(a + 4, 12)):  # neighbouring ids are clearly apart
            assert np.abs(np.array(colours[a]) - np.array(colours[b])).sum() > 120, (a, b)


def odd_clip(path, source: list[np.ndarray], n: int, size=(161, 97), fps: int = 12):
    """A lossless (ffv1) mkv of odd size: OpenCV's writers round sizes to even, so PyAV writes it."""
    container = av.open(str(path), "w")
    stream = container.add_stream("ffv1", rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "bgr0"
    for i in range(n):
        frame = cv2.resize(source[i % len(source)], size, interpolation=cv2.INTER_AREA)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def test_odd_size_clip_and_fps_fallback(street, tmp_path):
    clip = odd_clip(tmp_path / "odd.mkv", clip_frames(street), 7)
    out = tmp_path / "odd_overlay.mp4"
    result = result_for({2: [{"track_id": 1, "bbox": [10.0, 10.0, 50.0, 70.0], "score": 0.8,
                              "keypoints": [[30.0, 20.0 + 3 * k, 0.9] for k in range(17)]}]},
                        video={"width": 161, "height": 97, "fps": 0.0, "frames": 7})
    assert render_overlay(result, clip, out) == 7
    container, frames = decode(out)
    stream = container.streams.video[0]
    assert len(frames) == 7 and (stream.width, stream.height) == (162, 98)  # padded to even, not cropped
    assert float(stream.average_rate) == 12.0  # the result did not know the fps: the clip's


def test_max_frames_limits_the_render(street, tmp_path):
    out = tmp_path / "o.mp4"
    assert render_overlay(result_for({}), street, out, max_frames=3) == 3
    assert len(decode(out)[1]) == 3


def test_bad_inputs_raise_and_leave_no_file(street, tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(RenderError, match="not found"):
        render_overlay(result_for({}), tmp_path / "nope.mp4", out)
    with pytest.raises(RenderError, match="is for a 640x480 video"):
        render_overlay(result_for({}, {"width": 640, "height": 480, "fps": 5.0, "frames": 5}), street, out)
    assert not out.exists()
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(RenderError, match="decodable"):
        render_overlay(result_for({}), tmp_path / "junk.mp4", out)
    assert not out.exists()
    for bad, what in [([], "JSON object"), ({"frames": {}}, "frames"),
                      ({"frames": [{"frame_index": -1}]}, "frame_index"),
                      ({"frames": [{"frame_index": 0, "instances": [{"keypoints": [[1, 2]]}]}]}, "keypoints"),
                      ({"frames": [{"frame_index": 0, "instances": [{"bbox": [1, 2, 3]}]}]}, "bbox"),
                      ({"frames": [], "skeleton": [[0, "a"]]}, "skeleton")]:
        with pytest.raises(RenderError, match=what):
            render_overlay(bad, street, out)


def test_missing_frames():
    assert missing_frames(result_for({0: [], 2: [], 4: []})) == [1, 3]
    assert missing_frames(result_for({i: [] for i in range(5)})) == []
