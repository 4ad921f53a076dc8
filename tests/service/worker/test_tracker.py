"""Tracker: ids stay with people through crossings, gaps and newcomers; low scores only extend."""

from __future__ import annotations

import numpy as np
import pytest

from service.worker.detect.base import Detection
from service.worker.tracker import Tracker, TrackerConfig, iou_matrix


def det(x, y, w=50.0, h=100.0, score=0.9) -> Detection:
    return Detection((float(x), float(y), float(w), float(h)), float(score))


def ids(boxes) -> list[int]:
    return [b.track_id for b in boxes]


def by_x(boxes) -> dict[float, int]:
    """x of each output box -> its track id (to follow a person by where we put them)."""
    return {b.bbox[0]: b.track_id for b in boxes}


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    m = iou_matrix(a, b)
    assert m.shape == (2, 3)
    assert m[0, 0] == pytest.approx(1.0) and m[0, 1] == pytest.approx(50 / 150)
    assert m[1].tolist() == [0, 0, 0] and m[0, 2] == 0
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def test_output_is_the_detection_box_and_score():
    t = Tracker()
    [b] = t.update([det(10.5, 20.25, 30, 40, 0.77)])
    assert b.track_id == 0 and b.bbox == (10.5, 20.25, 30.0, 40.0) and b.score == pytest.approx(0.77)
    assert t.update([]) == []


def test_crossing_people_keep_their_ids():
    # A walks right, B walks left, slightly lower; their boxes overlap most around frame 10.
    t = Tracker()
    seen_a, seen_b = set(), set()
    for f in range(21):
        xa, xb = 10.0 * f, 200.0 - 10.0 * f
        out = t.update([det(xb, 104), det(xa, 100)])  # order of detections must not matter
        assert len(out) == 2
        got = {b.bbox[0] if b.bbox[1] == 100 else -b.bbox[0]: b.track_id for b in out}
        seen_a.add(got[xa])
        seen_b.add(got[-xb])
    assert seen_b == {0} and seen_a == {1}  # new tracks take ids in detection order


def test_crossing_with_occlusion_keeps_ids_by_motion():
    # While crossing, A (behind) is not detected for 3 frames; when A reappears its detection overlaps
    # B's last box better than A's own: only the constant-velocity prediction keeps the ids right.
    t = Tracker()
    for f in range(9):
        out = t.update([det(10.0 * f, 100), det(200.0 - 10.0 * f, 104)])
        assert by_x(out) == {10.0 * f: 0, 200.0 - 10.0 * f: 1}
    for f in range(9, 12):
        assert ids(t.update([det(200.0 - 10.0 * f, 104)])) == [1]
    for f in range(12, 16):
        out = t.update([det(10.0 * f, 100), det(200.0 - 10.0 * f, 104)])
        assert by_x(out) == {10.0 * f: 0, 200.0 - 10.0 * f: 1}, f


@pytest.mark.parametrize("gap", [1, 2, 3])
def test_missed_frames_keep_the_id(gap):
    t = Tracker()
    other = det(400, 50)
    for f in range(5):
        assert ids(t.update([det(5.0 * f, 0), other])) == [0, 1]
    for _ in range(gap):
        assert ids(t.update([other])) == [1]
    f = 5 + gap
    out = t.update([det(5.0 * f, 0), other])
    assert by_x(out) == {5.0 * f: 0, 400.0: 1}


def test_new_person_gets_a_new_id_and_others_keep_theirs():
    t = Tracker()
    for f in range(5):
        out = t.update([det(0 + f, 0), det(100 + f, 0)])
        assert by_x(out) == {0.0 + f: 0, 100.0 + f: 1}
    for f in range(5, 10):
        out = t.update([det(0 + f, 0), det(100 + f, 0), det(300, 10, score=0.6)])
        assert by_x(out) == {0.0 + f: 0, 100.0 + f: 1, 300.0: 2}


def test_low_score_extends_but_never_starts_a_track():
    t = Tracker(TrackerConfig(high_score=0.5, low_score=0.1))
    assert t.update([det(0, 0, score=0.3)]) == []  # alone: not a person yet
    assert t.update([det(0, 0, score=0.3)]) == []
    assert ids(t.update([det(0, 0, score=0.9)])) == [0]
    for f in range(1, 4):  # partly occluded: weak detections keep the track going
        [b] = t.update([det(2.0 * f, 0, score=0.2)])
        assert b.track_id == 0 and b.score == pytest.approx(0.2)
    assert t.update([det(8, 0, score=0.05)]) == []  # under low_score: ignored
    # A weak detection does not revive a track that was missed (ByteTrack's second stage: live tracks only)...
    assert t.update([det(10, 0, score=0.3)]) == []
    # ...but a confident one does, with the same id.
    assert ids(t.update([det(12, 0, score=0.8)])) == [0]


def test_track_gone_longer_than_max_gap_gets_a_new_id():
    t = Tracker(TrackerConfig(max_gap=3))
    t.update([det(0, 0)])
    for _ in range(3):
        t.update([])
    assert ids(t.update([det(0, 0)])) == [0]  # gone exactly max_gap frames: same person
    for _ in range(4):
        t.update([])
    assert ids(t.update([det(0, 0)])) == [1]  # gone longer: a new track


def test_ids_stay_in_range_and_wrap_to_the_smallest_free_id():
    t = Tracker(TrackerConfig(max_gap=0, max_ids=3))
    assert ids(t.update([det(0, 0), det(100, 0), det(200, 0)])) == [0, 1, 2]
    # The person with id 1 leaves; a newcomer takes the only free id.
    assert by_x(t.update([det(0, 0), det(200, 0), det(300, 0)])) == {0.0: 0, 200.0: 2, 300.0: 1}
    # All three ids held: a fourth person cannot get one (no duplicate ids), the others are unaffected.
    assert by_x(t.update([det(0, 0), det(200, 0), det(300, 0), det(500, 0)])) == {0.0: 0, 200.0: 2, 300.0: 1}
    # Ids 0 and 2 leave; ids are handed out in order from after the last one, wrapping.
    assert by_x(t.update([det(300, 0), det(600, 0), det(700, 0)])) == {300.0: 1, 600.0: 2, 700.0: 0}


def test_ids_are_allocated_in_order_not_reused_at_once():
    t = Tracker(TrackerConfig(max_gap=0))
    assert ids(t.update([det(0, 0)])) == [0]
    assert ids(t.update([det(500, 0)])) == [1]  # 0 left, 1 is next (0 is not recycled before the wrap)
    assert ids(t.update([det(900, 0)])) == [2]


def test_random_scenes_never_repeat_an_id_within_a_frame():
    rng = np.random.default_rng(0)
    t = Tracker(TrackerConfig(max_gap=2, max_ids=10))
    for _ in range(300):
        n = int(rng.integers(0, 8))
        xy = rng.uniform(0, 300, size=(n, 2))
        out = t.update([det(x, y, 40, 80, float(s)) for (x, y), s in zip(xy, rng.uniform(0, 1, n))])
        got = ids(out)
        assert len(got) == len(set(got)) and all(0 <= i < 10 for i in got)
        assert len(t.tracks) <= 10 and len({tr.track_id for tr in t.tracks}) == len(t.tracks)


def test_bad_boxes_are_ignored_and_bad_configs_refused():
    t = Tracker()
    assert t.update([det(0, 0, 0, 10), det(0, 0, float("nan"), 10)]) == []
    with pytest.raises(ValueError):
        TrackerConfig(high_score=0.2, low_score=0.5)
    with pytest.raises(ValueError):
        TrackerConfig(max_ids=0)
