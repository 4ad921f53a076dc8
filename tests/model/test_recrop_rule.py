"""The re-crop rule the worker and the evaluation share (model/windows.py)."""

from __future__ import annotations

import pytest

from model.windows import recrop_box, wants_recrop


@pytest.mark.parametrize("key, before, after, drop, fires", [
    (0.30, 0.60, 0.70, 0.8, True),    # well under both neighbours
    (0.50, 0.60, 0.70, 0.8, False),   # 0.5 >= 0.8 x 0.6
    (0.40, 0.90, 0.45, 0.8, False),   # one neighbour is as unsure: not a drop of this frame
    (0.10, 0.60, 0.70, 0.0, False),   # 0: off
    (0.10, 0.10, 0.10, 0.8, False),   # unsure all along
])
def test_wants_recrop(key, before, after, drop, fires):
    assert wants_recrop(key, before, after, drop) is fires


def test_wants_recrop_only_after_sure_neighbours():
    assert wants_recrop(0.05, 0.20, 0.30, 0.8)  # a drop, but from neighbours that were unsure too
    assert not wants_recrop(0.05, 0.20, 0.30, 0.8, min_confidence=0.25)
    assert wants_recrop(0.05, 0.25, 0.30, 0.8, min_confidence=0.25)


def test_recrop_box_is_the_mean_of_the_outermost_boxes():
    assert recrop_box((10, 20, 30, 60), (30, 20, 50, 80)) == (20.0, 20.0, 40.0, 70.0)
