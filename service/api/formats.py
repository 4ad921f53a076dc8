"""Result exports: PoseTrack18 JSON and COCO keypoint results, from result frames (COCO-17 order)."""

from __future__ import annotations

from model.keypoints import COCO_KEYPOINTS, COCO_SKELETON


def _flat(keypoints: list[list[float]]) -> list[float]:
    return [float(v) for kp in keypoints for v in kp[:3]]


def _instance_score(inst: dict) -> float:
    """The instance score, or the mean keypoint confidence when the worker gave none."""
    if inst.get("score") is not None:
        return float(inst["score"])
    kps = inst.get("keypoints") or []
    return float(sum(kp[2] for kp in kps) / len(kps)) if kps else 0.0


def to_coco(frames: list[dict]) -> list[dict]:
    """COCO results list: one entry per person and frame; image_id = frame_index, category 1 (person)."""
    out = []
    for frame in frames:
        for inst in frame.get("instances", []):
            out.append({
                "image_id": int(frame["frame_index"]),
                "category_id": 1,
                "keypoints": _flat(inst["keypoints"]),
                "score": _instance_score(inst),
                "bbox": [float(v) for v in inst["bbox"]],
                "track_id": int(inst["track_id"]),
            })
    return out


def to_posetrack(result: dict, video_name: str | None = None) -> dict:
    """PoseTrack18 JSON (images + annotations + categories) for the frames of a result."""
    video = result.get("video") or {}
    vid = video_name or str(result.get("job_id", "video"))
    nframes = int(video.get("frames") or len(result["frames"]))
    images, annotations = [], []
    for frame in result["frames"]:
        idx = int(frame["frame_index"])
        images.append({
            "id": idx, "frame_id": idx, "vid_id": vid, "file_name": f"{vid}/{idx:06d}.jpg",
            "nframes": nframes, "width": video.get("width"), "height": video.get("height"),
            "timestamp_s": frame.get("timestamp_s"), "is_labeled": True, "has_no_densepose": True,
        })
        for inst in frame.get("instances", []):
            kps = inst["keypoints"]
            annotations.append({
                "id": len(annotations), "image_id": idx, "category_id": 1, "track_id": int(inst["track_id"]),
                "keypoints": _flat(kps), "scores": [float(kp[2]) for kp in kps],
                "bbox": [float(v) for v in inst["bbox"]], "score": _instance_score(inst),
                "num_keypoints": len(kps),
            })
    categories = [{
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(result.get("keypoint_names") or COCO_KEYPOINTS),  # the model's slot names
        "skeleton": [[a + 1, b + 1] for a, b in (result.get("skeleton") or COCO_SKELETON)],  # 1-based
    }]
    return {"images": images, "annotations": annotations, "categories": categories}
