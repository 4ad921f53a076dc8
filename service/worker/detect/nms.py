"""Score filter + non-maximum suppression + cap, shared by the backends (numpy only)."""

from __future__ import annotations

import numpy as np

from service.worker.detect.base import Detection, DetectorConfig


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) xyxy clipped to the frame."""
    out = boxes.astype(np.float64, copy=True)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy NMS over (N, 4) xyxy boxes, score-descending (stable for ties)."""
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = (np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest])).clip(0)
        ih = (np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest])).clip(0)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def select(boxes_xyxy: np.ndarray, scores: np.ndarray, width: int, height: int,
           config: DetectorConfig) -> list[Detection]:
    """Clip to the frame, drop degenerate boxes and scores < low_score, NMS, keep the best max_people."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    boxes = clip_boxes(boxes, width, height)
    ok = ((scores >= config.low_score) & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
          & np.isfinite(scores))
    boxes, scores = boxes[ok], scores[ok].clip(0.0, 1.0)
    keep = nms(boxes, scores, config.nms_iou)[: config.max_people]
    return [Detection((float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])), float(s))
            for b, s in zip(boxes[keep], scores[keep])]
