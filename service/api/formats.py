"""Result exports from a result page (service/contract.py: ResultPage): COCO keypoint results and
PoseTrack18 JSON.

* COCO: one entry per person and frame, keypoints in true COCO-17 order (the model's slots must be
  COCO's: a model with other keypoints is refused with FormatError); the third value of each
  keypoint is its score, as in COCO results files (pycocotools ignores it); `score` is the instance
  score.
* PoseTrack18: the PoseTrack slot layout (head_bottom / head_top in slots 1 / 2, ears unlabelled).
  A COCO model's head_bottom / head_top are derived from its head joints
  (model.keypoints.coco_to_posetrack18, as the training evaluation does); a PoseTrack-layout model's
  slots are used as they are; other models are refused. Like training's writer
  (training/evaluate/posetrack_map.py: prediction_video), the third value of each keypoint is the
  visibility flag 1 (0, 0, 0 for an unlabelled slot) and the joint scores go to `scores` (poseval
  reads them there). A video named as PoseTrack names them (six digits first, e.g.
  `000342_mpii_test`) gets PoseTrack image ids (1, the six digits, then the 4-digit frame index).
"""

from __future__ import annotations

import re

import numpy as np

from model.keypoints import COCO_KEYPOINTS, COCO_SKELETON, POSETRACK18_KEYPOINTS, coco_to_posetrack18

_POSETRACK_VIDEO = re.compile(r"^(\d{6})(?:_|$)")


class FormatError(ValueError):
    """The result cannot be written in the asked format (e.g. COCO for a non-COCO model)."""


def to_coco(result: dict) -> list[dict]:
    """COCO results list: one entry per person and frame; image_id = frame_index, category 1 (person)."""
    names = tuple(result.get("keypoint_names") or COCO_KEYPOINTS)
    if names != COCO_KEYPOINTS:
        raise FormatError(f"format=coco needs a model with COCO-17 keypoints; this model's are {list(names)} "
                          "(use format=json or format=posetrack)")
    out = []
    for frame in result["frames"]:
        for inst in frame.get("instances", []):
            out.append({
                "image_id": int(frame["frame_index"]),
                "category_id": 1,
                "keypoints": [float(v) for kp in inst["keypoints"] for v in kp[:3]],
                "score": float(inst["score"]),
                "bbox": [float(v) for v in inst["bbox"]],
                "track_id": int(inst["track_id"]),
            })
    return out


def _posetrack_slots(names: tuple[str, ...]):
    """(K, 3) keypoints in the model's slots -> PoseTrack18 slots."""
    if names == POSETRACK18_KEYPOINTS:
        return lambda kps: np.asarray(kps, dtype=np.float64)
    if names == COCO_KEYPOINTS:
        return coco_to_posetrack18
    raise FormatError("format=posetrack needs a model with COCO-17 or PoseTrack18 keypoints; this "
                      f"model's are {list(names)} (use format=json)")


def to_posetrack(result: dict, video_name: str | None = None) -> dict:
    """PoseTrack18 JSON (images + annotations + categories) for the frames of a result page."""
    convert = _posetrack_slots(tuple(result.get("keypoint_names") or COCO_KEYPOINTS))
    video = result.get("video") or {}
    vid = video_name or str(result.get("job_id", "video"))
    nframes = int(video.get("frames") or len(result["frames"]))
    m = _POSETRACK_VIDEO.match(vid)
    base = int("1" + m.group(1)) * 10_000 if m else 0
    images, annotations = [], []
    for frame in result["frames"]:
        idx = int(frame["frame_index"])
        image_id = base + idx
        images.append({
            "id": image_id, "frame_id": image_id, "vid_id": m.group(1) if m else vid,
            "file_name": f"{vid}/{idx:06d}.jpg", "nframes": nframes, "width": video.get("width"),
            "height": video.get("height"), "timestamp_s": frame.get("timestamp_s"), "is_labeled": True,
            "has_no_densepose": True,
        })
        for inst in frame.get("instances", []):
            kps = convert(inst["keypoints"])
            labelled = ~np.all(kps == 0.0, axis=1)
            flat = np.stack([kps[:, 0], kps[:, 1], labelled.astype(np.float64)], axis=1)
            annotations.append({
                "id": len(annotations), "image_id": image_id, "category_id": 1,
                "track_id": int(inst["track_id"]),
                "keypoints": [round(float(v), 2) for v in flat.reshape(-1)],
                "scores": [round(float(s), 4) for s in kps[:, 2]],
                "bbox": [float(v) for v in inst["bbox"]], "score": float(inst["score"]),
                "num_keypoints": int(labelled.sum()),
            })
    categories = [{
        "id": 1, "name": "person", "supercategory": "person", "keypoints": list(POSETRACK18_KEYPOINTS),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON],  # 1-based; PoseTrack18's limbs are COCO's
    }]
    return {"images": images, "annotations": annotations, "categories": categories}
