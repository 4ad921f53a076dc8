"""make_detector, the full-frame backend, the shared NMS and the config checks."""

from __future__ import annotations

import numpy as np
import pytest

from service.settings import Settings
from service.worker.detect import Detection, DetectorConfig, DetectorError, make_detector
from service.worker.detect.nms import nms, select


def test_full_frame():
    det = make_detector("full-frame", DetectorConfig())
    assert det.name == "full-frame"
    got = det.detect([np.zeros((40, 60, 3), np.uint8), np.zeros((10, 20, 3), np.uint8)])
    assert got == [[Detection((0.0, 0.0, 60.0, 40.0), 1.0)], [Detection((0.0, 0.0, 20.0, 10.0), 1.0)]]
    assert det.detect([]) == []


def test_make_detector_names_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDPOSE_TFJS_MODELS", str(tmp_path / "absent.tgz"))  # auto without NanoDet -> hog
    assert make_detector("auto", DetectorConfig()).name == "hog"
    with pytest.raises(DetectorError, match="not found"):
        make_detector("auto", DetectorConfig(model_path=tmp_path / "yolo.onnx"))  # auto -> onnx
    with pytest.raises(DetectorError, match="unknown detector 'yolo'"):
        make_detector("yolo", DetectorConfig())
    with pytest.raises(DetectorError, match="RGB uint8"):
        make_detector("full-frame").detect([np.zeros((4, 4), np.uint8)])
    with pytest.raises(DetectorError, match="RGB uint8"):
        make_detector("hog").detect([np.zeros((40, 40, 3), np.float32)])
    assert issubclass(DetectorError, ValueError)


def test_config_checks_and_settings(monkeypatch):
    with pytest.raises(DetectorError, match="low_score"):
        DetectorConfig(low_score=1.5)
    with pytest.raises(DetectorError, match="hog_stride"):
        DetectorConfig(hog_stride=6)
    monkeypatch.setenv("VIDPOSE_DETECTOR_LOW_SCORE", "0.2")
    monkeypatch.setenv("VIDPOSE_DETECTOR_MAX_PEOPLE", "5")
    monkeypatch.setenv("VIDPOSE_DETECTOR_INPUT_SIZE", "320")
    cfg = DetectorConfig.from_settings(Settings(), threads=1)
    got = (cfg.low_score, cfg.max_people, cfg.input_size, cfg.threads, cfg.model_path)
    assert got == (0.2, 5, 320, 1, None)


def test_nms_and_select():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], float)
    scores = np.array([0.6, 0.9, 0.5, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # IoU(0, 1) = 0.68; the tie keeps the first
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 3, 2]
    cfg = DetectorConfig(low_score=0.55, nms_iou=0.5, max_people=5)
    got = select(boxes, scores, width=25, height=100, config=cfg)
    assert got == [Detection((1.0, 1.0, 10.0, 10.0), 0.9)]  # box 2 is under low_score
    clipped = select(np.array([[-5, -5, 10, 200], [24.5, 0, 40, 10]]), np.array([0.7, 0.8]), 25, 100, cfg)
    assert clipped == [Detection((0.0, 0.0, 10.0, 100.0), 0.7)]  # the second is < 1 px wide once clipped
