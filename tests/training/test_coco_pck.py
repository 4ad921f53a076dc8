"""COCO OKS AP through pycocotools, PCK/PCKh helpers, and `vidpose eval` on files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.evaluate.coco_ap import coco_keypoint_ap, gt_as_results
from training.evaluate.pck import head_sizes, pck_bbox, pckh


def test_coco_ap_of_ground_truth_is_one(shared_data):
    gt = shared_data / "coco/test_coco.json"
    stats = coco_keypoint_ap(gt, gt_as_results(gt))
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert coco_keypoint_ap(gt, [])["AP"] == 0.0
    # moving every keypoint by 8% of the person's box lowers AP
    data = json.loads(gt.read_text())
    boxes = {a["image_id"]: a["bbox"] for a in data["annotations"]}
    moved = gt_as_results(gt)
    for r in moved:
        k = np.asarray(r["keypoints"]).reshape(-1, 3)
        k[:, 0] += 0.08 * boxes[r["image_id"]][2]
        r["keypoints"] = k.reshape(-1).tolist()
    worse = coco_keypoint_ap(gt, moved)["AP"]
    assert 0.0 < worse < 0.9


def test_coco_ap_on_posetrack_gt(shared_data):
    gt = shared_data / "posetrack18/annotations/test_posetrack18_val.json"  # no `area`: box area is used
    assert coco_keypoint_ap(gt, gt_as_results(gt))["AP"] == pytest.approx(1.0)


def test_pckh_known_values():
    gt = np.zeros((2, 3, 3))
    gt[..., 2] = 1
    gt[1, 2, 2] = 0  # unlabelled
    pred = gt[..., :2].copy()
    pred[0, 0, 0] += 4.0  # person 0 head size 10: 4 <= 5 correct
    pred[0, 1, 0] += 6.0  # 6 > 5 wrong
    pred[1, 0, 1] += 1.0  # person 1 head size 1: 1 > 0.5 wrong
    res = pckh(torch.tensor(pred), torch.tensor(gt), np.array([10.0, 1.0]), thr=0.5)
    assert res.count == 5
    assert res.correct[0].tolist() == [True, False, True]
    np.testing.assert_allclose(res.per_joint, [0.5, 0.5, 1.0])
    assert res.mean == pytest.approx(3 / 5)
    only_first = pckh(pred, gt, [10.0, 1.0], mask=np.array([[1, 1, 1], [0, 0, 0]]))
    assert only_first.mean == pytest.approx(2 / 3)
    none = pckh(pred, gt, [0.0, 0.0])
    assert none.count == 0 and np.isnan(none.mean)
    np.testing.assert_allclose(head_sizes([[0, 0, 3, 4]]), [3.0])  # 0.6 * 5
    # longer box sides 100 and 20 -> thresholds 5 px and 1 px (1 <= 1 counts as correct)
    assert pck_bbox(pred, gt, [[0, 0, 100, 50], [0, 0, 10, 20]], thr=0.05).mean == pytest.approx(4 / 5)


def test_eval_cli(tmp_path, shared_data, capsys):
    from service.cli import main

    gt = shared_data / "posetrack18/annotations/val"
    out = tmp_path / "m.json"
    assert main(["eval", "--gt", str(gt), "--pred", str(gt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Head" in printed and "Total" in printed and "100.0" in printed
    metrics = json.loads(out.read_text())
    assert metrics["total"] == 100.0 and set(metrics["groups"]) == {"Head", "Sho", "Elb", "Wri", "Hip",
                                                                    "Knee", "Ank"}
    empty = tmp_path / "empty"
    empty.mkdir()
    for f in gt.glob("*.json"):
        v = json.loads(f.read_text())
        v["annotations"] = []
        (empty / f.name).write_text(json.dumps(v))
    assert main(["eval", "--gt", str(gt), "--pred", str(empty), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["total"] == 0.0
    assert main(["eval", "--gt", str(gt), "--pred", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err
    coco = shared_data / "coco/test_coco.json"
    res = tmp_path / "res.json"
    res.write_text(json.dumps(gt_as_results(coco)))
    assert main(["eval", "--metric", "coco", "--gt", str(coco), "--pred", str(res), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["AP"] == pytest.approx(1.0)
