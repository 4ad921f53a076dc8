"""PoseTrack multi-person pose mAP, as poseval (leonid-pishchulin/poseval) defines it.

Re-implemented step by step from poseval's `load_data_dir` -> `cleanupData` ->
`removeIgnoredPoints` -> `assignGTmulti` -> `computeMetrics`:

1. Each PoseTrack18 video JSON is read with poseval's conversion: a joint is a
   point unless it is exactly (0, 0, visibility 0); only the 15 PoseTrack joints
   are kept (by name: nose, head_bottom, head_top, shoulders ... ankles); a
   prediction's joint score is `scores[k]` (missing scores -> -9999).
2. GT frames without any annotated person are dropped, with the predictions
   on them (unlabelled frames are not scored).
3. In frames with ignore regions, points strictly inside any region polygon are
   dropped from GT and predictions; people left without points are dropped.
4. Per frame: head size = 0.6 x GT head-box diagonal; a predicted joint matches
   a GT joint when distance <= 0.5 x head size (PCKh@0.5). Each prediction keeps
   only its best GT by PCKh (fraction of the GT's joints it matches); each GT
   then takes the best of the predictions that kept it (ties: lowest index;
   PCKh 0 = unmatched). Every predicted joint becomes a detection scored by its
   joint score, a true positive iff it matches its person's GT joint.
5. Per joint: detections of all frames sorted by score (numpy argsort,
   reversed), precision/recall against the number of GT joints, VOC AP with
   the monotone precision envelope, x100. Total = mean of the joint APs that
   are not NaN (a joint with no GT and some predictions is NaN; a joint with no
   predictions is 0).

Deliberate differences, none of which changes a score: predictions are matched
to GT frames by image id (poseval: by position, which is the same when the
files list images in the same order); a file holding several videos is scored
whole (poseval reads only its first video); point-in-polygon is the even-odd
rule with boundary points outside (poseval: shapely `contains`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.datasets.format import ignore_regions
from training.datasets.layouts import POSEVAL_JOINTS

MIN_SCORE = -9999.0
DIST_THRESHOLD = 0.5
NUM_JOINTS = len(POSEVAL_JOINTS)
_J = {name: i for i, name in enumerate(POSEVAL_JOINTS)}
# The standard table: Head = (head_top, head_bottom, nose); the rest average left and right.
GROUPS: dict[str, tuple[str, ...]] = {
    "Head": ("head_top", "head_bottom", "nose"),
    "Sho": ("right_shoulder", "left_shoulder"),
    "Elb": ("right_elbow", "left_elbow"),
    "Wri": ("right_wrist", "left_wrist"),
    "Hip": ("right_hip", "left_hip"),
    "Knee": ("right_knee", "left_knee"),
    "Ank": ("right_ankle", "left_ankle"),
}


# --------------------------------------------------------------------------- geometry
def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N, 2) points strictly inside the (M, 2) polygon (even-odd rule; boundary = outside)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64)
    if len(pts) == 0 or len(poly) < 3:
        return np.zeros(len(pts), dtype=bool)
    x, y = pts[:, :1], pts[:, 1:]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    inside = (np.sum(crosses & (x < x_at), axis=1) % 2) == 1
    cross = (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)
    scale = np.maximum(np.abs(x1 - x0) + np.abs(y1 - y0), 1.0)
    on_edge = ((np.abs(cross) <= 1e-9 * scale) & (x >= np.minimum(x0, x1)) & (x <= np.maximum(x0, x1))
               & (y >= np.minimum(y0, y1)) & (y <= np.maximum(y0, y1)))
    return inside & ~on_edge.any(axis=1)


# --------------------------------------------------------------------------- poseval's per-frame form
@dataclass
class _People:
    """People of one frame: (n, 15) joint presence, positions, scores; head sizes (GT only)."""

    has: np.ndarray  # (n, 15) bool
    xy: np.ndarray  # (n, 15, 2)
    score: np.ndarray  # (n, 15)
    head_size: np.ndarray  # (n,)

    @classmethod
    def empty(cls) -> _People:
        return cls(np.zeros((0, NUM_JOINTS), bool), np.zeros((0, NUM_JOINTS, 2)), np.zeros((0, NUM_JOINTS)),
                   np.zeros(0))

    def __len__(self) -> int:
        return len(self.has)

    def drop_ignored(self, regions: list[np.ndarray]) -> _People:
        if not regions or len(self) == 0:
            return self
        has = self.has.copy()
        flat = self.xy.reshape(-1, 2)
        ignored = np.zeros(len(flat), dtype=bool)
        for poly in regions:
            ignored |= points_in_polygon(flat, poly)
        has &= ~ignored.reshape(has.shape)
        keep = has.any(axis=1)
        return _People(has[keep], self.xy[keep], self.score[keep], self.head_size[keep])


@dataclass
class _Frame:
    video: str
    image_id: int
    gt: _People
    pred: _People
    ignore_regions: list[np.ndarray] = field(default_factory=list)


def _conversion(names) -> list[int | None]:
    return [_J.get(n) for n in names]


def _people(anns: list[dict], table: list[int | None], is_gt: bool, where: str) -> _People:
    n = len(anns)
    has = np.zeros((n, NUM_JOINTS), bool)
    xy = np.zeros((n, NUM_JOINTS, 2))
    score = np.full((n, NUM_JOINTS), np.nan)
    head = np.full(n, np.nan)
    for r, ann in enumerate(anns):
        kps = np.asarray(ann.get("keypoints") or [], dtype=np.float64).reshape(-1, 3)
        if len(kps) != len(table):
            raise ValueError(f"{where}: annotation has {len(kps)} keypoints, categories name {len(table)}")
        scores = ann.get("scores") or []
        for k, (x, y, v) in enumerate(kps):
            j = table[k]
            if j is None or (x == 0 and y == 0 and v == 0):
                continue
            has[r, j] = True
            xy[r, j] = (x, y)
            score[r, j] = float(scores[k]) if scores else MIN_SCORE
        if is_gt:
            hb = ann.get("bbox_head")
            if hb is not None and len(hb) == 4:
                head[r] = 0.6 * float(np.hypot(hb[2], hb[3]))
    return _People(has, xy, score, head)


def _keypoint_names(video: dict, where: str, fallback=None) -> list[str]:
    cats = video.get("categories") or []
    if not cats:
        if fallback is None:
            raise ValueError(f"{where}: no categories with keypoint names")
        return fallback
    names = list(cats[0]["keypoints"])
    missing = [n for n in POSEVAL_JOINTS if n not in names]
    if missing:
        raise ValueError(f"{where}: PoseTrack mAP needs the 15 PoseTrack joints; missing {missing} "
                         "(COCO-layout data: use the COCO OKS AP instead)")
    return names


FrameFilter = Callable[[dict, list[dict]], bool]


def _frames(name: str, gt: dict, pred: dict | None, frame_filter: FrameFilter | None) -> list[_Frame]:
    gt_names = _keypoint_names(gt, f"GT {name}")
    gt_table = _conversion(gt_names)
    pred = pred or {}
    pr_table = _conversion(_keypoint_names(pred, f"prediction {name}", fallback=gt_names))
    gt_by_image: dict[int, list[dict]] = {}
    for ann in gt.get("annotations", []):
        gt_by_image.setdefault(ann["image_id"], []).append(ann)
    pr_by_image: dict[int, list[dict]] = {}
    for ann in pred.get("annotations", []):
        pr_by_image.setdefault(ann["image_id"], []).append(ann)
    gt_ids = [im["id"] for im in gt.get("images", [])]
    if pred.get("images"):
        pr_ids = [im["id"] for im in pred["images"]]
        if sorted(pr_ids) != sorted(gt_ids):
            raise ValueError(f"prediction {name}: its {len(pr_ids)} frames do not match "
                             f"the {len(gt_ids)} GT frames")
    stray = set(pr_by_image) - set(gt_ids)
    if stray:
        raise ValueError(f"prediction {name}: annotations for image ids not in the GT: {sorted(stray)[:5]}")
    frames = []
    for im in gt.get("images", []):
        anns = gt_by_image.get(im["id"], [])
        if not anns:  # poseval cleanupData: frames without GT people are not scored
            continue
        if frame_filter is not None and not frame_filter(im, anns):
            continue
        where = f"{name} image {im['id']}"
        gt_people = _people(anns, gt_table, True, f"GT {where}")
        pr_people = _people(pr_by_image.get(im["id"], []), pr_table, False, f"prediction {where}")
        regions = ignore_regions(im)
        frames.append(_Frame(name, im["id"], gt_people.drop_ignored(regions), pr_people.drop_ignored(regions),
                             regions))
    return frames


# --------------------------------------------------------------------------- matching and AP
def _assign(frame: _Frame, scores: list[list], labels: list[list], n_gt: np.ndarray) -> None:
    gt, pr = frame.gt, frame.pred
    n_gt += gt.has.sum(axis=0)
    if len(pr) == 0:
        return
    if len(gt) == 0:  # no GT left: every predicted joint is a false positive
        for r in range(len(pr)):
            for j in np.flatnonzero(pr.has[r]):
                scores[j].append(pr.score[r, j])
                labels[j].append(False)
        return
    if np.any(~np.isfinite(gt.head_size) & gt.has.any(axis=1)):
        raise ValueError(f"{frame.video} image {frame.image_id}: a GT person has no bbox_head (head size)")
    both = pr.has[:, None, :] & gt.has[None, :, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.linalg.norm(pr.xy[:, None] - gt.xy[None], axis=-1) / gt.head_size[None, :, None]
    dist = np.where(both, dist, np.inf)
    match = dist <= DIST_THRESHOLD
    pck = match.sum(axis=2).astype(np.float64)
    n_gtp = gt.has.sum(axis=1)
    pck = np.where(n_gtp[None] > 0, pck / np.maximum(n_gtp[None], 1), pck)
    best = np.argmax(pck, axis=1)  # each prediction keeps its best GT only
    keep = np.zeros_like(pck)
    rows = np.arange(len(pr))
    keep[rows, best] = pck[rows, best]
    pr_to_gt = np.argmax(keep, axis=0)
    pr_to_gt[np.max(keep, axis=0) == 0] = -1
    for r in range(len(pr)):
        hits = np.flatnonzero(pr_to_gt == r)
        m = match[r, hits[0]] if len(hits) else np.zeros(NUM_JOINTS, bool)
        for j in np.flatnonzero(pr.has[r]):
            scores[j].append(pr.score[r, j])
            labels[j].append(bool(m[j]))


def _rpc(scores: np.ndarray, labels: np.ndarray, total_pos: float):
    order = np.array(scores).argsort()[::-1]  # poseval's sort, ties included
    tp = np.cumsum(labels[order] == 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / total_pos
        precision = tp / np.arange(1, len(order) + 1)
    return precision, recall


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.flatnonzero(~np.equal(mrec[1:], mrec[:-1])) + 1
    with np.errstate(invalid="ignore"):
        return float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))


@dataclass
class PoseTrackAP:
    """Per-joint AP / precision / recall (x100, poseval joint names), the table groups and Total."""

    ap: dict[str, float]
    precision: dict[str, float]
    recall: dict[str, float]
    total: float
    groups: dict[str, float]
    num_frames: int
    num_gt_joints: int
    num_pred_joints: int

    def table(self, title: str | None = None) -> str:
        cols = [*GROUPS, "Total"]
        vals = [*(self.groups[c] for c in GROUPS), self.total]
        head = "| " + " | ".join(f"{c:>5}" for c in cols) + " |"
        row = "| " + " | ".join(f"{v:5.1f}" for v in vals) + " |"
        lines = [title] if title else []
        return "\n".join([*lines, head, "|" + "|".join("-" * 7 for _ in cols) + "|", row])

    def to_dict(self) -> dict:
        def clean(v):
            return None if v is None or not np.isfinite(v) else round(float(v), 4)

        return {
            "metric": "posetrack_map",
            "total": clean(self.total),
            "groups": {k: clean(v) for k, v in self.groups.items()},
            "ap": {k: clean(v) for k, v in self.ap.items()},
            "precision": {k: clean(v) for k, v in self.precision.items()},
            "recall": {k: clean(v) for k, v in self.recall.items()},
            "num_frames": self.num_frames,
            "num_gt_joints": self.num_gt_joints,
            "num_pred_joints": self.num_pred_joints,
        }


def _metrics(frames: list[_Frame]) -> PoseTrackAP:
    scores: list[list] = [[] for _ in range(NUM_JOINTS)]
    labels: list[list] = [[] for _ in range(NUM_JOINTS)]
    n_gt = np.zeros(NUM_JOINTS)
    for frame in frames:
        _assign(frame, scores, labels, n_gt)
    ap = np.zeros(NUM_JOINTS)
    pre = np.zeros(NUM_JOINTS)
    rec = np.zeros(NUM_JOINTS)
    for j in range(NUM_JOINTS):
        if not scores[j]:
            continue
        p, r = _rpc(np.asarray(scores[j], dtype=np.float64), np.asarray(labels[j], dtype=np.int8), n_gt[j])
        ap[j] = _voc_ap(r, p) * 100
        pre[j] = p[-1] * 100
        rec[j] = r[-1] * 100

    def mean(v):
        ok = ~np.isnan(v)
        return float(v[ok].mean()) if ok.any() else float("nan")

    by_name = {name: float(ap[i]) for i, name in enumerate(POSEVAL_JOINTS)}
    groups = {g: float(np.mean([by_name[n] for n in names])) for g, names in GROUPS.items()}
    return PoseTrackAP(
        ap=by_name,
        precision={name: float(pre[i]) for i, name in enumerate(POSEVAL_JOINTS)},
        recall={name: float(rec[i]) for i, name in enumerate(POSEVAL_JOINTS)},
        total=mean(ap), groups=groups, num_frames=len(frames), num_gt_joints=int(n_gt.sum()),
        num_pred_joints=int(sum(len(s) for s in scores)))


# --------------------------------------------------------------------------- inputs
Videos = Mapping[str, dict]


def load_posetrack_videos(path) -> dict[str, dict]:
    """A PoseTrack18 JSON file or a directory of them -> {file stem: parsed JSON}."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise FileNotFoundError(f"no PoseTrack JSON files at {path}")
    out = {}
    for f in files:
        with open(f) as fh:
            out[f.stem] = json.load(fh)
    return out


def _as_videos(x) -> dict[str, dict]:
    return dict(x) if isinstance(x, Mapping) else load_posetrack_videos(x)


def evaluate_posetrack(gt, pred, frame_filter: FrameFilter | None = None) -> PoseTrackAP:
    """PoseTrack mAP of `pred` against `gt`.

    gt / pred: a directory of per-video PoseTrack18 JSONs, one such file, or an
    in-memory {video name: PoseTrack18 dict}; videos pair by name (file stem).
    A GT video with no prediction file raises (as poseval does). frame_filter
    (image dict, its GT annotations) -> bool selects the frames scored.
    """
    gt_videos, pred_videos = _as_videos(gt), _as_videos(pred)
    missing = sorted(set(gt_videos) - set(pred_videos))
    if missing:
        more = " ..." if len(missing) > 5 else ""
        raise FileNotFoundError(f"no predictions for GT videos {missing[:5]}{more}")
    frames: list[_Frame] = []
    for name in sorted(gt_videos):
        frames.extend(_frames(name, gt_videos[name], pred_videos[name], frame_filter))
    return _metrics(frames)


def occluded_frames(image: dict, annotations: list[dict]) -> bool:
    """Frame filter: some GT joint carries the `occluded` flag (vidpose synthetic data)."""
    return any(any(v > 0 for v in (ann.get("occluded") or ())) for ann in annotations)


def has_occlusion_flags(gt) -> bool:
    return any("occluded" in ann for v in _as_videos(gt).values() for ann in v.get("annotations", []))


# --------------------------------------------------------------------------- writing predictions
def prediction_video(gt_video: dict, people: Mapping[int, list[dict]], keypoint_names) -> dict:
    """A PoseTrack18 prediction dict for one video.

    people: {image_id: [{"keypoints": (K, 3) x, y, score, "track_id": int, optional "bbox": xywh}]}
    in image pixels; keypoint_names: the K slot names (e.g. the checkpoint's).
    Joint scores go to `scores`; visibility is written as 1.
    """
    anns = []
    for image_id, persons in people.items():
        for i, p in enumerate(persons):
            kps = np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3)
            flat = np.stack([kps[:, 0], kps[:, 1], np.ones(len(kps))], axis=1).reshape(-1)
            ann = {"image_id": image_id, "id": int(image_id) * 100 + i, "category_id": 1,
                   "track_id": int(p.get("track_id", i)), "keypoints": [round(float(v), 2) for v in flat],
                   "scores": [round(float(s), 5) for s in kps[:, 2]]}
            if p.get("bbox") is not None:
                ann["bbox"] = [round(float(v), 2) for v in p["bbox"]]
            anns.append(ann)
    return {
        "images": [{k: im[k] for k in ("id", "file_name", "frame_id", "vid_id", "nframes") if k in im}
                   for im in gt_video.get("images", [])],
        "annotations": anns,
        "categories": [{"supercategory": "person", "id": 1, "name": "person",
                        "keypoints": list(keypoint_names)}],
    }


def write_posetrack_dir(videos: Mapping[str, dict], out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, video in videos.items():
        with open(out / f"{name}.json", "w") as fh:
            json.dump(video, fh)
    return out
