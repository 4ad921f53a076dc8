"""Render a result document's poses onto its clip: every clip frame in, one H.264 frame out.

The result document is the native JSON of GET /jobs/{id}/result (keys video, skeleton,
frames[{frame_index, instances[{track_id, bbox, score, keypoints}]}]). Frames are read with
OpenCV like the worker reads them, so frame i of the clip is the frame i the poses belong to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2

from model.keypoints import COCO_SKELETON
from service.render.draw import draw_instances
from service.render.encode import H264Writer


class RenderError(ValueError):
    """A result document or clip that cannot be rendered (the message says why)."""


def load_result(path: str | Path) -> dict:
    """Read and check a result JSON file; RenderError with a clear message otherwise."""
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"result file not found: {path}")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RenderError(f"{path}: not valid JSON ({e})") from None
    check_result(result, str(path))
    return result


def check_result(result: object, where: str = "result") -> None:
    """The shape render_overlay needs; RenderError naming the first problem."""
    if not isinstance(result, dict):
        raise RenderError(f"{where}: expected a JSON object (the result of GET /jobs/{{id}}/result)")
    frames = result.get("frames")
    if not isinstance(frames, list):
        raise RenderError(f"{where}: no 'frames' list (is this the native JSON result, not posetrack/coco?)")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or isinstance(frame.get("frame_index"), bool) \
                or not isinstance(frame.get("frame_index"), int) or frame["frame_index"] < 0:
            raise RenderError(f"{where}: frames[{i}] needs a non-negative integer frame_index")
        instances = frame.get("instances", [])
        if not isinstance(instances, list) or not all(isinstance(x, dict) for x in instances):
            raise RenderError(f"{where}: frames[{i}].instances must be a list of objects")
        for j, inst in enumerate(instances):
            kps = inst.get("keypoints", [])
            if not isinstance(kps, list) or not all(
                    isinstance(k, list) and len(k) >= 3 and all(_is_number(v) for v in k[:3]) for k in kps):
                raise RenderError(f"{where}: frames[{i}].instances[{j}].keypoints must be "
                                  "[[x, y, score], ...]")
            bbox = inst.get("bbox")
            if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4
                                         and all(_is_number(v) for v in bbox)):
                raise RenderError(f"{where}: frames[{i}].instances[{j}].bbox must be [x, y, w, h]")
    skeleton = result.get("skeleton")
    if skeleton is not None and not (isinstance(skeleton, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) and v >= 0 for v in p)
            for p in skeleton)):
        raise RenderError(f"{where}: skeleton must be a list of [a, b] keypoint index pairs")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def missing_frames(result: dict) -> list[int]:
    """Frame indices below video.frames that the document has no entry for (e.g. one page of many)."""
    total = int((result.get("video") or {}).get("frames") or 0)
    have = {f["frame_index"] for f in result.get("frames", [])}
    return [i for i in range(total) if i not in have]


def render_overlay(result: dict, clip: str | Path, out: str | Path, min_score: float = 0.3,
                   max_frames: int | None = None) -> int:
    """Draw `result`'s poses on every frame of `clip` (the first max_frames when given) and write an
    H.264 mp4 to `out`. Frames without instances are written unchanged. Returns the frames written.
    On failure `out` is removed and RenderError (bad input) or the underlying error is raised."""
    check_result(result)
    clip, out = Path(clip), Path(out)
    if not clip.is_file():
        raise RenderError(f"clip not found: {clip}")
    video = result.get("video") or {}
    skeleton: Sequence[Sequence[int]] = result.get("skeleton") or COCO_SKELETON
    by_index = {f["frame_index"]: f.get("instances") or [] for f in result["frames"]}
    cap = cv2.VideoCapture(str(clip))
    writer: H264Writer | None = None
    try:
        if not cap.isOpened():
            raise RenderError(f"{clip}: not a decodable video")
        fps = float(video.get("fps") or 0.0) or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        index = 0
        while max_frames is None or index < max_frames:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            if writer is None:
                h, w = bgr.shape[:2]
                rw, rh = int(video.get("width") or 0), int(video.get("height") or 0)
                if rw and rh and (rw, rh) != (w, h):
                    raise RenderError(f"the result is for a {rw}x{rh} video but {clip} is {w}x{h}: "
                                      "is it the clip the job processed?")
                writer = H264Writer(out, w, h, fps)
            instances = by_index.get(index)
            if instances:
                draw_instances(bgr, instances, skeleton, min_score)
            writer.write(bgr)
            index += 1
        if writer is None:
            raise RenderError(f"{clip}: the video has no decodable frames")
        writer.close()
        return writer.frames
    except BaseException:
        if writer is not None:
            try:
                writer.close()
            except Exception:  # already failing: the original error is the one to report
                pass
        out.unlink(missing_ok=True)
        raise
    finally:
        cap.release()
