"""Key-frame corruptions: each does what its name says, only where it should, and is seeded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from training.corruptions import EXTRA_KINDS, KINDS, corrupt


@pytest.fixture(scope="module")
def frame(shared_data):
    cap = cv2.VideoCapture(str(shared_data / "videos" / "soccer.mp4"))
    ok, a = cap.read()
    ok2, b = cap.read()
    cap.release()
    assert ok and ok2
    return cv2.cvtColor(a, cv2.COLOR_BGR2RGB), cv2.cvtColor(b, cv2.COLOR_BGR2RGB)


BOX = [500.0, 200.0, 120.0, 300.0]  # x, y, w, h


def _inside(shape):
    mask = np.zeros(shape[:2], bool)
    mask[200:500, 500:620] = True
    return mask


@pytest.mark.parametrize("kind", ["occlude_person", "occlude_box"])
def test_occluders_cover_part_of_the_box_and_nothing_else(frame, kind):
    img, other = frame
    donor = other[100:300, 100:200]
    out = corrupt(kind, img, BOX, np.random.default_rng(0), donor=donor)
    changed = (out != img).any(-1)
    inside = _inside(img.shape)
    assert not changed[~inside].any()
    share = changed[inside].mean()
    assert 0.15 < share <= 0.62, share  # 30-60 % of the box (a few pasted pixels may equal the original)


def test_every_kind_is_deterministic_for_a_seed_and_changes_the_frame(frame):
    img, other = frame
    for kind in KINDS + EXTRA_KINDS:
        kw = dict(donor=other[:50, :50], neighbour=other)
        a = corrupt(kind, img, BOX, np.random.default_rng(7), **kw)
        b = corrupt(kind, img, BOX, np.random.default_rng(7), **kw)
        assert a.shape == img.shape and a.dtype == np.uint8
        assert np.array_equal(a, b), kind
        assert not np.array_equal(a, img), kind


def test_cross_is_a_person_height_patch_over_part_of_the_box_with_soft_edges(frame):
    img, other = frame
    donor = other[100:300, 100:180]  # 200 x 80: aspect 2.5, like a pedestrian
    for seed in range(20):
        out = corrupt("cross", img, BOX, np.random.default_rng(seed), donor=donor)
        changed = (np.abs(out.astype(int) - img.astype(int)) > 2).any(-1)
        ys, xs = np.nonzero(changed)
        height = ys.max() - ys.min() + 1
        assert 0.8 * BOX[3] <= height <= 1.35 * BOX[3], height  # 0.9-1.3x the box, soft edges trimmed
        assert ys.max() >= BOX[1] + BOX[3] - 10  # feet at or below the box's
        width = xs.max() - xs.min() + 1
        assert abs(width / height - 80 / 200) < 0.1  # the donor's aspect is kept
        assert BOX[0] - width / 2 - 5 <= xs.mean() <= BOX[0] + BOX[2] + width / 2 + 5  # centred over the box
    # Feathered: over a black frame a white donor's columns rise from grey at its edges to white inside.
    black, white = np.zeros((720, 1280, 3), np.uint8), np.full((200, 80, 3), 255, np.uint8)
    out = corrupt("cross", black, BOX, np.random.default_rng(3), donor=white)[..., 0].astype(int)
    row = out[int(BOX[1] + BOX[3] / 2)]
    cols = np.nonzero(row)[0]
    assert row.max() == 255 and 0 < row[cols.min()] < 128 and 0 < row[cols.max()] < 128


def test_drop_repeat_dark_blur(frame):
    img, other = frame
    rng = np.random.default_rng(1)
    assert (corrupt("drop", img, BOX, rng) == 128).all()
    assert np.array_equal(corrupt("repeat", img, BOX, rng, neighbour=other), other)
    assert corrupt("dark", img, BOX, rng).mean() < 0.35 * img.mean()
    blurred = corrupt("blur", img, BOX, rng)
    sharp = lambda x: cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert sharp(blurred) < 0.7 * sharp(img)


def test_bad_requests_are_refused(frame):
    img, _ = frame
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt("rain", img, BOX, rng)
    for kind in ("occlude_person", "cross"):
        with pytest.raises(ValueError, match="donor"):
            corrupt(kind, img, BOX, rng)
    with pytest.raises(ValueError, match="neighbour"):
        corrupt("repeat", img, BOX, rng)
