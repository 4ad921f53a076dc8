"""Detectors are one table (service/detectors.py): settings, API options, the worker pool and
GET /detectors all follow it, so a new backend is one entry."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from service import detectors
from service.contract import JobOptions
from service.settings import Settings
from service.worker.detect import Detection, DetectorConfig, make_detector
from service.worker.people import DetectorPool, job_mode, people_source


class CornerDetector:
    """A toy backend: one 10x20 box in the top-left corner of every frame."""

    name = "corner"

    def __init__(self, config: DetectorConfig):
        self.config = config

    def detect(self, frames):
        return [[Detection((0.0, 0.0, 10.0, 20.0), 0.9)] for _ in frames]


@pytest.fixture()
def with_corner(monkeypatch):
    spec = detectors.DetectorSpec("corner", "top-left box (test)", CornerDetector, track_score=0.6)
    monkeypatch.setitem(detectors.REGISTRY, "corner", spec)
    return spec


def test_names_come_from_the_table():
    assert detectors.names() == ("nanodet", "hog", "onnx", "full-frame")
    assert detectors.job_choices() == ("provided", "nanodet", "hog", "onnx", "full-frame")
    assert detectors.setting_choices() == ("auto", "nanodet", "hog", "onnx", "full-frame")
    assert [n for n in detectors.names() if not detectors.spec(n).tracked] == ["full-frame"]  # exists once


def test_a_new_backend_is_one_entry(with_corner):
    s = Settings(detector="corner")  # settings accept it
    assert JobOptions(detector="corner").detector == "corner"  # the API accepts it
    assert job_mode({"detector": "corner"}, s) == "corner"
    assert make_detector("corner", DetectorConfig()).name == "corner"
    pool = DetectorPool(s)
    assert "corner" in pool.available()
    src = people_source({}, s, pool)  # the default: tracked with its own track-start score
    assert src._tracker.config.high_score == 0.6
    got = src.boxes([0, 1], [np.zeros((40, 60, 3), np.uint8)] * 2)
    assert [[p.bbox for p in ps] for ps in got] == [[(0.0, 0.0, 10.0, 20.0)]] * 2
    assert len({p.track_id for ps in got for p in ps}) == 1
    assert "corner" in [row["name"] for row in detectors.catalog(s)]


def test_unknown_detector_is_refused_with_the_registry_names():
    with pytest.raises(ValidationError, match="provided, nanodet, hog, onnx, full-frame"):
        JobOptions(detector="yolo")
    with pytest.raises(ValidationError, match="auto, nanodet, hog, onnx, full-frame"):
        Settings(detector="yolo")
    schema = JobOptions.model_json_schema()["properties"]["detector"]
    assert schema["enum"] == list(detectors.job_choices())


def test_auto_and_track_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDPOSE_TFJS_MODELS", str(tmp_path / "absent.tgz"))
    name, warning = detectors.resolve(Settings())
    assert name == "hog" and "falling back to hog" in warning and "VIDPOSE_TFJS_MODELS" in warning
    assert detectors.resolve(Settings(detector_model=tmp_path / "y.onnx")) == ("onnx", None)
    assert detectors.resolve(Settings(detector="nanodet")) == ("nanodet", None)  # named: the worker fails
    pkg = tmp_path / "human-models.tgz"
    pkg.write_bytes(b"")
    monkeypatch.setenv("VIDPOSE_TFJS_MODELS", str(pkg))
    assert detectors.resolve(Settings()) == ("nanodet", None)
    assert detectors.track_score("nanodet", Settings()) == 0.33
    assert detectors.track_score("hog", Settings()) == 0.5
    assert detectors.track_score("nanodet", Settings(detector_score_threshold=0.45)) == 0.45
