from __future__ import annotations

import numpy as np
import pytest

from service.worker.boxes import (
    GivenBoxes,
    InvalidOptions,
    PersonBox,
    full_frame_boxes,
    parse_boxes,
)


def test_full_frame_box():
    rgb = np.zeros((30, 40, 3), np.uint8)
    assert full_frame_boxes(0, rgb) == [PersonBox(0, (0.0, 0.0, 40.0, 30.0), None)]


def test_list_form_track_ids_default_to_index():
    boxes = parse_boxes([[[1, 2, 3, 4], {"bbox": [5, 6, 7, 8], "score": 0.5}], [], [[0, 0, 1, 1]]])
    assert sorted(boxes) == [0, 2]  # frame 1 has no people
    assert [b.track_id for b in boxes[0]] == [0, 1]
    assert boxes[0][1].score == 0.5 and boxes[0][1].bbox == (5.0, 6.0, 7.0, 8.0)


def test_dict_form_and_given_track_ids():
    src = GivenBoxes(parse_boxes({"3": [{"bbox": [1, 1, 10, 20], "track_id": 7}]}))
    rgb = np.zeros((4, 4, 3), np.uint8)
    assert src(3, rgb)[0].track_id == 7
    assert src(0, rgb) == []


@pytest.mark.parametrize("raw", [
    "nope", [[[1, 2, 3]]], [[[1, 2, 0, 4]]], [[[1, 2, "a", 4]]], [[{"bbox": [1, 1, 1, 1], "track_id": -1}]],
    [[{"bbox": [1, 1, 1, 1], "track_id": 2}, {"bbox": [1, 1, 1, 1], "track_id": 2}]],
    {"x": []}, [[[1, 2, float("nan"), 4]]], [[{"bbox": [1, 1, 1, 1], "track_id": True}]],
])
def test_bad_boxes_rejected(raw):
    with pytest.raises(InvalidOptions):
        parse_boxes(raw)
