"""COCO keypoint AP (OKS) through pycocotools.

    coco_keypoint_ap(gt, results) -> {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}

gt: a COCO keypoints JSON path or dict; results: COCO results (path or list of
{"image_id", "category_id", "keypoints": 3K floats (x, y, score), "score"}).
Values are fractions in [0, 1]; GT without `area` gets the box area; no results
at all scores 0. `sigmas` overrides the per-joint OKS constants (default:
COCO's 17, also used for PoseTrack slots).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def _load(x):
    if isinstance(x, (str, Path)):
        with open(x) as fh:
            return json.load(fh)
    return copy.deepcopy(x)


def coco_keypoint_ap(gt, results, sigmas=None) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = _load(gt)
    dets = _load(results)
    if not isinstance(dets, list):
        raise ValueError("results must be a list of COCO keypoint results")
    if not dets:
        return {name: 0.0 for name in STAT_NAMES}
    for ann in data.get("annotations", []):  # PoseTrack GT has no area: use the box's
        if "area" not in ann and "bbox" in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
        coco_dt = coco.loadRes(dets)
        ev = COCOeval(coco, coco_dt, iouType="keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}


def gt_as_results(gt, score: float = 1.0) -> list[dict]:
    """The GT annotations with keypoints, in results format (a sanity input: AP must be 1.0)."""
    data = _load(gt)
    out = []
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
            continue
        kps = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        kps[:, 2] = 1.0
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                    "keypoints": kps.reshape(-1).tolist(), "score": score})
    return out
