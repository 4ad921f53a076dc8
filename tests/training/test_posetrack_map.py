"""PoseTrack mAP (poseval definition): GT = 100, empty = 0, hand-computed values for built cases."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from training.datasets.layouts import POSETRACK18, POSEVAL_JOINTS
from training.evaluate.posetrack_map import (
    evaluate_posetrack,
    load_posetrack_videos,
    points_in_polygon,
    prediction_video,
)

HEAD = 10.0  # head box 10 x 10 -> head size 0.6 * 14.142 = 8.485 -> PCKh@0.5 threshold 4.243 px
SLOT = {name: i for i, name in enumerate(POSETRACK18.keypoints)}


def person(x0: float, y0: float = 50.0) -> np.ndarray:
    """(17, 3) PoseTrack18-layout joints of a person at x0 (15 joints labelled, ears empty)."""
    kps = np.zeros((17, 3))
    for k in range(17):
        if k in (3, 4):
            continue
        kps[k] = (x0 + 3 * (k % 5), y0 + 9 * k, 1)
    return kps


def gt_video(people, ignore=None, extra_unlabelled_frame=False):
    images = [{"id": 1, "file_name": "images/v/000000.jpg", "is_labeled": True}]
    if ignore is not None:
        images[0]["ignore_regions_x"] = [list(ignore[:, 0])]
        images[0]["ignore_regions_y"] = [list(ignore[:, 1])]
    if extra_unlabelled_frame:
        images.append({"id": 2, "file_name": "images/v/000001.jpg", "is_labeled": False})
    anns = [{"id": 100 + i, "image_id": 1, "track_id": i, "keypoints": p.reshape(-1).tolist(),
             "bbox_head": [p[0, 0] - 5, p[0, 1] - 8, HEAD, HEAD], "bbox": [0, 0, 1, 1]}
            for i, p in enumerate(people)]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(POSETRACK18.keypoints)}]}


def pred_video(gt, preds, image_id=1):
    """preds: list of (keypoints (17,3) with x, y, score)."""
    return prediction_video(gt, {image_id: [{"keypoints": p, "track_id": i} for i, p in enumerate(preds)]},
                            POSETRACK18.keypoints)


def scored(kps, score):
    out = kps.copy()
    out[:, 2] = np.where(kps[:, 2] > 0, score, 0.0)
    return out


def ev(gt, pred):
    return evaluate_posetrack({"v": gt}, {"v": pred})


A, B = person(100.0), person(300.0)


def test_gt_as_prediction_is_100_and_empty_is_0():
    gt = gt_video([A, B])
    res = evaluate_posetrack({"v": gt}, {"v": gt})  # GT files have no scores: poseval's -9999 fallback
    assert res.total == pytest.approx(100.0)
    assert all(v == pytest.approx(100.0) for v in res.groups.values())
    assert res.num_gt_joints == 30 and res.num_pred_joints == 30
    empty = ev(gt, pred_video(gt, []))
    assert empty.total == 0.0 and all(v == 0.0 for v in empty.ap.values())


def test_shifted_joints_beyond_threshold():
    gt = gt_video([A, B])
    b = scored(B, 0.8)
    for name in ("right_ankle", "left_wrist", "nose"):
        b[SLOT[name], 0] += 10.0  # 10 px > 4.243 px
    b[SLOT["left_knee"], 0] += 4.0  # 4 px < 4.243 px: still correct
    res = ev(gt, pred_video(gt, [scored(A, 0.9), b]))
    # a shifted joint: TP (0.9) then FP (0.8) -> precision [1, .5], recall [.5, .5] -> AP 50
    for name in POSEVAL_JOINTS:
        assert res.ap[name] == pytest.approx(50.0 if name in ("right_ankle", "left_wrist", "nose") else 100.0)
    assert res.total == pytest.approx((12 * 100 + 3 * 50) / 15)
    assert res.groups["Ank"] == pytest.approx(75.0)
    assert res.groups["Head"] == pytest.approx(250 / 3)
    assert res.precision["nose"] == pytest.approx(50.0) and res.recall["nose"] == pytest.approx(50.0)


def test_missing_joints():
    gt = gt_video([A, B])
    b = scored(B, 0.8)
    missing = ("left_knee", "right_knee", "left_ankle", "right_ankle", "head_top")
    for name in missing:
        b[SLOT[name]] = 0.0  # (0, 0, 0) = not predicted
    res = ev(gt, pred_video(gt, [scored(A, 0.9), b]))
    # a missing joint: one TP out of two GT -> precision [1], recall [.5] -> AP 50
    for name in POSEVAL_JOINTS:
        assert res.ap[name] == pytest.approx(50.0 if name in missing else 100.0)
    assert res.total == pytest.approx((10 * 100 + 5 * 50) / 15)


def test_extra_false_person_lowers_precision_by_its_score():
    gt = gt_video([A, B])
    ghost = person(600.0)  # far from everyone: matches no GT
    high = ev(gt, pred_video(gt, [scored(A, 0.9), scored(B, 0.9), scored(ghost, 0.95)]))
    # FP ranked first: precision [0, .5, .667], recall [0, .5, 1] -> AP = .5 * .667 + .5 * .667
    assert high.total == pytest.approx(200 / 3)
    assert all(v == pytest.approx(200 / 3) for v in high.ap.values())
    low = ev(gt, pred_video(gt, [scored(A, 0.9), scored(B, 0.9), scored(ghost, 0.5)]))
    assert low.total == pytest.approx(100.0)  # ranked last: full recall is reached at precision 1
    assert low.precision["nose"] == pytest.approx(200 / 3)


def test_greedy_matching_one_prediction_per_gt():
    gt = gt_video([A])
    near = scored(A, 0.95)
    near[:5, 0] += 20.0  # 10 of 15 joints still match A, but a better prediction exists
    res = ev(gt, pred_video(gt, [scored(A, 0.9), near]))
    # A takes the exact prediction; `near` is unmatched, so all its joints are FPs ranked first -> AP 50
    assert res.total == pytest.approx(50.0)


def test_ignore_regions_drop_points_from_both_sides():
    region = np.array([[250.0, 0.0], [450.0, 0.0], [450.0, 400.0], [250.0, 400.0]])  # covers B only
    gt = gt_video([A, B], ignore=region)
    ghost = scored(person(320.0, 60.0), 0.99)  # a false person inside the region
    res = ev(gt, pred_video(gt, [scored(A, 0.9), ghost]))
    assert res.total == pytest.approx(100.0)  # B's GT and the ghost are both ignored
    assert res.num_gt_joints == 15 and res.num_pred_joints == 15
    no_region = gt_video([A, B])
    assert ev(no_region, pred_video(no_region, [scored(A, 0.9), ghost])).total < 60.0


def test_unlabelled_frames_are_not_scored_and_nan_joints_are_skipped():
    gt = gt_video([A], extra_unlabelled_frame=True)
    pred = pred_video(gt, [scored(A, 0.9)])
    pred["annotations"].append({**pred["annotations"][0], "image_id": 2, "id": 201})  # unlabelled frame
    assert ev(gt, pred).total == pytest.approx(100.0)
    # no GT head_top anywhere but a predicted one: that joint's AP is NaN and leaves the mean
    a = A.copy()
    a[SLOT["head_top"]] = 0.0
    gt2 = gt_video([a])
    res = ev(gt2, pred_video(gt2, [scored(A, 0.9)]))
    assert np.isnan(res.ap["head_top"]) and res.total == pytest.approx(100.0)
    assert res.to_dict()["ap"]["head_top"] is None


def test_inputs_and_errors(tmp_path, shared_data):
    gt = gt_video([A, B])
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt/v.json").write_text(json.dumps(gt))
    (tmp_path / "pred/v.json").write_text(json.dumps(pred_video(gt, [scored(A, 0.9), scored(B, 0.9)])))
    assert evaluate_posetrack(tmp_path / "gt", tmp_path / "pred").total == pytest.approx(100.0)
    with pytest.raises(FileNotFoundError, match="no predictions"):
        evaluate_posetrack(tmp_path / "gt", {"other": gt})
    bad = copy.deepcopy(gt)
    bad["categories"][0]["keypoints"] = [n.replace("head_top", "right_eye") for n in bad["categories"][0][
        "keypoints"]]
    with pytest.raises(ValueError, match="head_top"):
        evaluate_posetrack({"v": bad}, {"v": bad})
    stray = pred_video(gt, [scored(A, 0.9)], image_id=99)
    with pytest.raises(ValueError, match="not in the GT"):
        ev(gt, stray)
    # the real sample: GT scored as prediction is 100; one GT joint lies in an ignore region
    videos = load_posetrack_videos(shared_data / "posetrack18/annotations/val")
    res = evaluate_posetrack(videos, videos)
    assert res.total == pytest.approx(100.0) and res.num_frames == 3
    labelled = sum(int((np.asarray(a["keypoints"]).reshape(17, 3)[:, 2] > 0).sum())
                   for v in videos.values() for a in v["annotations"])
    assert res.num_gt_joints == labelled - 1


def test_points_in_polygon():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    pts = np.array([[5, 5], [15, 5], [10, 5], [0, 0], [9.99, 0.01], [-1, -1]])
    assert points_in_polygon(pts, square).tolist() == [True, False, False, False, True, False]
    # a concave "U": the notch is outside
    u = np.array([[0, 0], [10, 0], [10, 10], [7, 10], [7, 3], [3, 3], [3, 10], [0, 10]], float)
    assert points_in_polygon(np.array([[5, 6], [5, 1], [1, 8]]), u).tolist() == [False, True, True]
