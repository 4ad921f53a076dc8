"""Which people source a job gets, and what a worker without a detector file says."""

from __future__ import annotations

import numpy as np
import pytest

from service.settings import Settings
from service.worker.boxes import InvalidOptions, PersonBox
from service.worker.people import DetectorPool, default_detector, job_mode, people_source


@pytest.fixture(autouse=True)
def _no_nanodet(tmp_path, monkeypatch):
    """These tests are about the hog/onnx/full-frame paths: no NanoDet package, so auto = hog."""
    monkeypatch.setenv("VIDPOSE_TFJS_MODELS", str(tmp_path / "absent.tgz"))


def test_default_detector_setting(tmp_path):
    assert default_detector(Settings(detector="auto")) == "hog"
    assert default_detector(Settings(detector="auto", detector_model=tmp_path / "d.onnx")) == "onnx"
    s = Settings(detector="full-frame", detector_model=tmp_path / "d.onnx")
    assert default_detector(s) == "full-frame"


@pytest.mark.parametrize("options, mode", [
    ({}, "hog"), ({"boxes": [[[0, 0, 5, 5]]]}, "provided"), ({"detector": "full-frame"}, "full-frame"),
    ({"detector": "provided", "boxes": {"0": [[0, 0, 5, 5]]}}, "provided"), ({"detector": "onnx"}, "onnx"),
])
def test_job_mode(options, mode):
    assert job_mode(options, Settings()) == mode


@pytest.mark.parametrize("options, needle", [
    ({"detector": "yolo"}, "one of"), ({"detector": "provided"}, "needs options.boxes"),
    ({"detector": "hog", "boxes": [[[0, 0, 5, 5]]]}, "only used with detector 'provided'"),
])
def test_job_mode_refuses(options, needle):
    with pytest.raises(InvalidOptions, match=needle):
        job_mode(options, Settings())


def test_onnx_without_a_file_is_an_invalid_option():
    pool = DetectorPool(Settings())
    assert pool.available() == ["provided", "hog", "full-frame"]  # registry order; no onnx file, no NanoDet
    with pytest.raises(InvalidOptions, match="not available on this worker"):
        people_source({"detector": "onnx"}, Settings(), pool)


def test_sources_yield_boxes_per_frame():
    frames = [np.zeros((40, 60, 3), np.uint8)] * 3
    s = Settings()
    pool = DetectorPool(s)
    full = people_source({"detector": "full-frame"}, s, pool)
    assert full.boxes([0, 1, 2], frames) == [[PersonBox(0, (0.0, 0.0, 60.0, 40.0), None)]] * 3
    given = people_source({"boxes": {"1": [{"bbox": [1, 2, 3, 4], "track_id": 5}]}}, s, pool)
    assert given.boxes([0, 1, 2], frames) == [[], [PersonBox(5, (1.0, 2.0, 3.0, 4.0), None)], []]
    hog = people_source({}, s, pool)
    assert hog.batch == s.detector_batch and hog.boxes([0, 1, 2], frames) == [[], [], []]  # blank frames
    assert pool.get("hog") is pool.get("hog")  # one detector per worker
