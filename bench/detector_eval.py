"""Person detectors on the PoseTrack18 sample frames: box recall and pose mAP with detected boxes.

(a) Box recall / precision at IoU >= 0.5 against the ground-truth person boxes,
    at several score thresholds, for the hog and nanodet backends (nanodet when its
    package is there: VIDPOSE_TFJS_MODELS) and, as a reference, the real detector boxes shipped
    with the sample (annotations/test_posetrack18_human_detections.json).
    Matching is greedy by score, one detection per GT box. Precision leaves out
    detections whose centre is in an image's ignore region (crowds PoseTrack
    did not label; poseval drops poses there too).
(b) PoseTrack mAP (poseval-exact, training/evaluate/posetrack_map.py) of a
    checkpoint when people are cropped from the GT boxes (the usual "GT boxes"
    protocol) vs from detected boxes scoring >= the track threshold. The crops,
    the model run and the scoring are training.predict + checkpoint_eval's.

    python bench/detector_eval.py                         # data from ../shared/data
    python bench/detector_eval.py --data DIR --checkpoint service/models/vidpose-movenet-thunder.safetensors

A small sample (3 frames, 14 people): numbers say whether the pipeline works,
not how good a detector is.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service import detectors  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.worker.detect import DetectorConfig, make_detector  # noqa: E402
from training.datasets.posetrack import load_posetrack  # noqa: E402
from training.evaluate.posetrack_map import points_in_polygon  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("VIDPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_CKPT = REPO / "service" / "models" / "vidpose-movenet-thunder.safetensors"  # the served default


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) COCO xywh -> (N, M) IoU."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = (np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    ih = (np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(gt: np.ndarray, dets: np.ndarray, scores: np.ndarray, thr: float = 0.5) -> np.ndarray:
    """Greedy by score: each detection takes the unmatched GT box it overlaps most (IoU >= thr).
    Returns a bool per detection (true positive)."""
    iou = iou_matrix(dets, gt)
    taken = np.zeros(len(gt), bool)
    tp = np.zeros(len(dets), bool)
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        if not len(gt):
            break
        cand = np.where(taken, -1.0, iou[d])
        g = int(np.argmax(cand))
        if cand[g] >= thr:
            taken[g] = tp[d] = True
    return tp


def sample_frames(data: Path):
    """[(video, FrameAnnotation, RGB image)] for every labelled sample frame."""
    videos = load_posetrack(data / "posetrack18" / "annotations" / "val")
    out = []
    for v in videos:
        for f in v.frames.values():
            if f.labelled and f.people:
                img = cv2.imread(str(data / "posetrack18" / f.file_name), cv2.IMREAD_COLOR)
                out.append((v, f, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
    return videos, out


def box_table(frames, detections: dict[int, tuple[np.ndarray, np.ndarray]], thresholds) -> list[dict]:
    rows = []
    for thr in thresholds:
        n_gt = tp = n_det = n_ignored = 0
        for _, f, _ in frames:
            gt = np.array([p.box for p in f.people.values() if p.box is not None]).reshape(-1, 4)
            boxes, scores = detections.get(f.image_id, (np.zeros((0, 4)), np.zeros(0)))
            keep = scores >= thr
            boxes, scores = boxes[keep], scores[keep]
            centres = boxes[:, :2] + boxes[:, 2:] / 2
            ignored = np.zeros(len(boxes), bool)
            for poly in f.ignore_regions:
                ignored |= points_in_polygon(centres, poly)
            hit = match(gt, boxes, scores)
            n_gt += len(gt)
            tp += int(hit.sum())
            n_det += len(boxes)
            n_ignored += int((ignored & ~hit).sum())
        counted = n_det - n_ignored
        rows.append({"score_min": thr, "gt": n_gt, "tp": tp, "recall": tp / max(n_gt, 1), "detections": n_det,
                     "in_ignore_regions": n_ignored, "precision": tp / counted if counted else float("nan")})
    return rows


def shipped_detections(data: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    path = data / "posetrack18" / "annotations" / "test_posetrack18_human_detections.json"
    with open(path) as fh:
        items = json.load(fh)
    out: dict[int, list] = {}
    for d in items:
        if d.get("category_id", 1) == 1:
            out.setdefault(int(d["image_id"]), []).append((d["bbox"], d["score"]))
    return {k: (np.array([b for b, _ in v], float), np.array([s for _, s in v], float))
            for k, v in out.items()}


def detected_dataset(gt_dataset, boxes_by_image: dict[int, np.ndarray]):
    """The GT dataset with its people replaced by one sample per detected box (same frames, no GT)."""
    from training.datasets.base import WindowSample

    ds = copy.copy(gt_dataset)
    ds.samples = []
    k = gt_dataset.cfg.num_keypoints
    firsts = {}
    for s in gt_dataset.samples:
        firsts.setdefault(s.image_id, s)
    for image_id, key in firsts.items():
        for i, box in enumerate(boxes_by_image.get(image_id, np.zeros((0, 4)))):
            ds.samples.append(WindowSample(
                paths=key.paths, boxes=np.repeat(np.asarray(box, float)[None], len(key.paths), axis=0),
                keypoints=np.zeros((k, 3)), window_indices=key.window_indices, image_id=image_id,
                frame_id=key.frame_id, track_id=i, video=key.video, file_name=key.file_name))
    return ds


def pose_maps(data: Path, checkpoint: Path, boxes: dict[str, dict[int, np.ndarray]]) -> dict[str, dict]:
    import torch

    from model.checkpoint import load_checkpoint
    from training.datasets.posetrack import PoseTrackDataset
    from training.evaluate.checkpoint_eval import posetrack_scores
    from training.predict import predict
    from training.transforms import AugmentConfig

    torch.set_num_threads(2)
    model, meta = load_checkpoint(checkpoint, map_location="cpu")
    model.eval()
    root = data / "posetrack18"
    gt_ds = PoseTrackDataset(root / "annotations" / "val", root, model.cfg, train=False,
                             augment=AugmentConfig(scale_factor=0.0, rotation_factor=0.0, flip_prob=0.0,
                                                   color_prob=0.0))
    out = {}
    for name, ds in [("GT boxes", gt_ds), *((n, detected_dataset(gt_ds, b)) for n, b in boxes.items())]:
        if len(ds) == 0:
            out[name] = {"people": 0, "map": None}
            continue
        scores = posetrack_scores(ds, predict(model, ds, batch_size=16),
                                  model_keypoints=meta["keypoints"] or None)
        out[name] = {"people": len(ds), "map": scores["map"]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared sample data folder")
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--track-score", type=float, default=None,
                    help="detections scoring at least this are posed (VIDPOSE_DETECTOR_SCORE_THRESHOLD; "
                    "default: each detector's own, service/detectors.py)")
    ap.add_argument("--nanodet-size", type=int, default=DetectorConfig.nanodet_input_size,
                    help="nanodet input, longer side (VIDPOSE_NANODET_INPUT_SIZE)")
    ap.add_argument("--no-pose", action="store_true", help="box numbers only (no torch)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    _, frames = sample_frames(args.data)
    config = DetectorConfig(nanodet_input_size=args.nanodet_size)
    names = ["hog"] + (["nanodet"] if detectors.unavailable("nanodet", Settings()) is None else [])
    found, seconds = {}, {}
    for name in names:
        det = make_detector(name, config)
        det.detect([frames[0][2]])  # warm-up (nanodet: first run)
        t0 = time.perf_counter()
        out = det.detect([img for _, _, img in frames])
        seconds[name] = round(time.perf_counter() - t0, 2)
        found[name] = {f.image_id: (np.array([d.bbox for d in ds], float).reshape(-1, 4),
                                    np.array([d.score for d in ds], float))
                       for (_, f, _), ds in zip(frames, out)}
    shipped = shipped_detections(args.data)
    track = {n: args.track_score if args.track_score is not None else detectors.REGISTRY[n].track_score
             for n in names}
    thresholds = sorted({config.low_score, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, *track.values()})
    result = {"frames": len(frames), "config": {k: str(v) for k, v in vars(config).items()},
              "seconds": seconds, "track_score": track,
              "boxes": {**{n: box_table(frames, found[n], thresholds) for n in names},
                        "shipped detector": box_table(frames, shipped, (0.0, config.low_score, 0.5))}}

    print(f"## Person boxes vs GT, IoU >= 0.5 ({len(frames)} PoseTrack18 sample frames, "
          f"{result['boxes']['hog'][0]['gt']} GT people)\n")
    print("| detector | score >= | detections | in ignore regions | TP | recall | precision |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in result["boxes"].items():
        for r in rows:
            print(f"| {name} | {r['score_min']:.2f} | {r['detections']} | {r['in_ignore_regions']} | "
                  f"{r['tp']} | {r['recall']:.3f} | {r['precision']:.3f} |")
    for n in names:
        print(f"\n{n}: {seconds[n]:.2f} s for the {len(frames)} frames in one call ("
              f"{'x'.join(str(v) for v in frames[0][2].shape[1::-1])}, nanodet input {args.nanodet_size}, "
              f"threads={config.threads}; track-start score {track[n]})")

    if not args.no_pose:
        def above_n(dets, thr):
            return {k: b[s >= thr] for k, (b, s) in dets.items()}

        detected = {f"{n} boxes (score >= {track[n]})": above_n(found[n], track[n]) for n in names}
        detected[f"shipped detector boxes (score >= {track['hog']})"] = above_n(shipped, track["hog"])
        maps = pose_maps(args.data, args.checkpoint, detected)
        result["pose"] = {"checkpoint": str(args.checkpoint), **maps}
        print(f"\n## Pose mAP (poseval) of {args.checkpoint.name}\n")
        groups = ["Head", "Sho", "Elb", "Wri", "Hip", "Knee", "Ank"]
        print("| boxes | people posed | " + " | ".join(groups) + " | Total |")
        print("|---|---|" + "---|" * (len(groups) + 1))
        for name, r in maps.items():
            m = r["map"]
            vals = ["-"] * (len(groups) + 1) if m is None else \
                [f"{m['groups'][g]:.1f}" for g in groups] + [f"{m['total']:.1f}"]
            print(f"| {name} | {r['people']} | " + " | ".join(vals) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
