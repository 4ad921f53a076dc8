"""Score a model on a dataset: PoseTrack mAP (poseval), its occluded-frame subset, PCK(h).

People are cropped from their ground-truth boxes (the standard "GT boxes"
protocol), predictions are mapped back to image pixels by training.predict,
written as PoseTrack18 prediction videos and scored by evaluate_posetrack.
COCO-format data gets COCO OKS AP instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.data import build_dataset
from training.datasets.layouts import convert_keypoints
from training.evaluate.posetrack_map import (
    evaluate_posetrack,
    has_occlusion_flags,
    occluded_frames,
    prediction_video,
)
from training.predict import Predictions, pck_summary, predict


def _posetrack_videos(dataset) -> list:
    """The PoseTrack videos behind a dataset (PoseTrackDataset, or a subclass)."""
    videos = getattr(dataset, "videos", None)
    if videos is None:
        raise ValueError("PoseTrack mAP needs PoseTrack-format data (posetrack:, synth: or clips: specs)")
    return videos


def posetrack_scores(dataset, preds: Predictions, use_base: bool = False, model_keypoints=None) -> dict:
    """mAP over all labelled frames and over frames with occluded joints (synthetic data).

    model_keypoints: the model's keypoint names, when they differ from the data's layout (a COCO
    model on PoseTrack18: see layouts.convert_keypoints); None = the data's own.
    """
    videos = _posetrack_videos(dataset)
    stem_of = {v.name: Path(v.source).stem for v in videos}
    gt = {}
    for v in videos:
        with open(v.source) as fh:
            gt[Path(v.source).stem] = json.load(fh)
    people: dict[str, dict[int, list[dict]]] = {stem: {} for stem in gt}
    kps = preds.base_keypoints if use_base else preds.keypoints
    if model_keypoints is not None:
        kps = convert_keypoints(kps, model_keypoints, dataset.layout)
    for k, meta in zip(kps, preds.meta):
        stem = stem_of[meta["video"]]
        people[stem].setdefault(int(meta["image_id"]), []).append(
            {"keypoints": k, "track_id": int(meta["track_id"])})
    names = list(dataset.layout.keypoints)
    pred = {stem: prediction_video(gt[stem], people[stem], names) for stem in gt}
    out = {"map": evaluate_posetrack(gt, pred).to_dict()}
    if has_occlusion_flags(gt):
        out["map_occluded_frames"] = evaluate_posetrack(gt, pred, frame_filter=occluded_frames).to_dict()
    return out


def coco_scores(dataset, preds: Predictions) -> dict:
    from training.evaluate.coco_ap import coco_keypoint_ap

    results = [{"image_id": int(m["image_id"]), "category_id": 1,
                "keypoints": [round(float(v), 3) for v in np.c_[k[:, :2], np.ones(len(k))].reshape(-1)],
                "score": float(np.mean(k[:, 2]))}
               for k, m in zip(preds.keypoints, preds.meta)]
    return {"coco_ap": coco_keypoint_ap(str(dataset.ann_file), results)}


def evaluate_model(model, spec: str, batch_size: int = 16, device: str = "cpu", seed: int = 0,
                   sigma: float = 3.0, diffusion_steps: int | None = None,
                   hypotheses: int | None = None, model_keypoints=None) -> dict:
    """All metrics of `model` on the val split of data `spec` (see training/data.py).

    model_keypoints: the checkpoint's keypoint names (COCO models are scored on PoseTrack data
    through layouts.convert_keypoints).
    diffusion_steps / hypotheses override the model's S / K; S = 0 scores the temporal head alone.
    """
    dataset = build_dataset(spec, model.cfg, train=False, sigma=sigma, augment=False)
    preds = predict(model, dataset, batch_size=batch_size, device=device, seed=seed,
                    diffusion_steps=diffusion_steps, hypotheses=hypotheses)
    cfg = model.cfg
    out: dict = {"data": spec, "people": len(dataset), "pck": pck_summary(preds),
                 "diffusion_steps": cfg.diffusion_steps if diffusion_steps is None else diffusion_steps,
                 "hypotheses": cfg.hypotheses if hypotheses is None else hypotheses}
    if spec.startswith("coco:"):
        out.update(coco_scores(dataset, preds))
    else:
        out.update(posetrack_scores(dataset, preds, model_keypoints=model_keypoints))
        out["single_frame"] = posetrack_scores(dataset, preds, use_base=True, model_keypoints=model_keypoints)
    return out
