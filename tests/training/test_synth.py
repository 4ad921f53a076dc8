"""Synthetic video generator: determinism, PoseTrack loadability, label sanity, CLI, clips folders."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from model.config import get_preset
from training.datasets import ClipsDataset, synthetic_dataset
from training.evaluate.posetrack_map import evaluate_posetrack, occluded_frames
from training.synth import SynthConfig, generate

torch.set_num_threads(min(2, torch.get_num_threads()))
CFG = get_preset("tiny-cpu")
SMALL = SynthConfig(width=160, height=128, frames=8)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, clips=4, cfg=SMALL, seed=11, val_fraction=0.25)
    return root


def anns_of(video, image_id):
    return [a for a in video["annotations"] if a["image_id"] == image_id]


def _json_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("annotations/*/*.json"))}


def _pixels(root):
    return {p.relative_to(root).as_posix(): cv2.imread(str(p)) for p in sorted(root.glob("images/*/*/*.jpg"))}


def test_layout_of_the_output(synth_root):
    assert sorted(p.name for p in (synth_root / "annotations/train").glob("*.json")) == [
        "000000_synth.json", "000001_synth.json", "000002_synth.json"]
    assert [p.name for p in (synth_root / "annotations/val").glob("*.json")] == ["000003_synth.json"]
    assert len(list((synth_root / "images/val/000003_synth").glob("*.jpg"))) == SMALL.frames
    video = synth_root / "videos/val/000003_synth.mp4"
    cap = cv2.VideoCapture(str(video))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (SMALL.height, SMALL.width, 3)
        n += 1
    assert n == SMALL.frames
    data = json.loads((synth_root / "annotations/val/000003_synth.json").read_text())
    assert data["categories"][0]["keypoints"][1:3] == ["head_bottom", "head_top"]
    assert all(im["is_labeled"] for im in data["images"])
    for ann in data["annotations"]:
        kps = np.asarray(ann["keypoints"]).reshape(17, 3)
        assert set(np.unique(kps[:, 2])) <= {0, 1, 2}
        assert (kps[3:5] == 0).all()  # PoseTrack18 ears stay empty
        occ = np.asarray(ann["occluded"])
        assert ((occ == 1) == (kps[:, 2] == 1)).all()  # hidden joints: v = 1 and the flag
        x, y, w, h = ann["bbox"]
        lab = kps[:, 2] > 0
        assert (kps[lab, 0] >= x - 1).all() and (kps[lab, 0] <= x + w + 1).all()
        assert (kps[lab, 1] >= y - 1).all() and (kps[lab, 1] <= y + h + 1).all()
        assert ann["bbox_head"][2] > 0 and ann["bbox_head"][3] > 0


def test_deterministic_for_a_seed(synth_root, tmp_path):
    again = tmp_path / "again"
    generate(again, clips=4, cfg=SMALL, seed=11, val_fraction=0.25, workers=2)  # worker count does not matter
    assert _json_bytes(again) == _json_bytes(synth_root)
    a, b = _pixels(again), _pixels(synth_root)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = tmp_path / "other"
    generate(other, clips=1, cfg=SMALL, seed=12, val_fraction=0.0)
    assert _json_bytes(other)["annotations/train/000000_synth.json"] != \
        _json_bytes(synth_root)["annotations/train/000000_synth.json"]


def test_occluders_hide_joints_somewhere(tmp_path):
    root = tmp_path / "occ"
    generate(root, clips=6, cfg=SynthConfig(width=160, height=128, frames=10), seed=0, val_fraction=0.0)
    occluded = visible = 0
    for p in root.glob("annotations/train/*.json"):
        for ann in json.loads(p.read_text())["annotations"]:
            occluded += sum(ann["occluded"])
            visible += sum(v == 2 for v in ann["keypoints"][2::3])
    assert occluded > 0 and visible > 5 * occluded


def test_loads_through_the_posetrack_loader(synth_root):
    ds = synthetic_dataset(synth_root, "train", CFG, train=False)
    assert len(ds) > 0 and ds.layout.name == "posetrack18"
    h, w = CFG.input_size
    for i in range(0, len(ds), max(1, len(ds) // 10)):
        item = ds[i]
        lab = item["keypoints"][:, 2] > 0
        kc = item["keypoints_crop"][lab]
        assert ((kc[:, 0] >= 0) & (kc[:, 0] < w) & (kc[:, 1] >= 0) & (kc[:, 1] < h)).all()
        assert item["head_size"] > 0
    # every frame is labelled, so windows carry each frame's own box for the track
    s = next(s for s in ds.samples if len(set(s.window_indices)) == CFG.window)
    assert len({tuple(b) for b in s.boxes}) > 1
    # ground truth scored against itself is 100 (also on its occluded-frame subset)
    gt = synth_root / "annotations/train"
    assert evaluate_posetrack(gt, gt).total == pytest.approx(100.0)
    n_occ = sum(any(sum(a["occluded"]) for a in anns_of(json.loads(p.read_text()), im["id"]))
                for p in gt.glob("*.json") for im in json.loads(p.read_text())["images"])
    assert evaluate_posetrack(gt, gt, frame_filter=occluded_frames).num_frames == n_occ


def test_clips_folder_decodes_videos_when_frames_are_missing(synth_root, tmp_path):
    root = tmp_path / "clips"
    shutil.copytree(synth_root / "annotations", root / "annotations")
    shutil.copytree(synth_root / "videos", root / "videos")
    ds = ClipsDataset(root, CFG, train=False, split="val")
    assert (root / ".frames/images/val/000003_synth/000000.jpg").is_file()
    ref = synthetic_dataset(synth_root, "val", CFG, train=False)
    assert len(ds) == len(ref)
    a, b = ds[0]["frames"], ref[0]["frames"]
    assert (a - b).abs().mean() < 0.15  # mp4v re-encoding: close, not equal
    with pytest.raises(FileNotFoundError, match="no video"):
        shutil.rmtree(root / ".frames")
        shutil.rmtree(root / "videos")
        ClipsDataset(root, CFG, train=False, split="val")


def test_cli(tmp_path, capsys):
    from service.cli import main

    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--clips", "2", "--frames", "3", "--seed", "1",
                 "--size", "128x96", "--val-fraction", "0.5", "--layout", "coco"]) == 0
    data = json.loads((out / "annotations/val/000001_synth.json").read_text())
    assert data["categories"][0]["keypoints"][1] == "left_eye"
    assert json.loads((out / "synth.json").read_text())["config"]["layout"] == "coco"
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(out), "--size", "12"])
    assert main(["synth", "--out", str(out), "--clips", "0"]) == 2
