"""Datasets on the real sample files and on hand-made PoseTrack clips: parsing, crops, windows."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from model.config import get_preset
from model.heatmaps import apply_affine, decode_heatmaps, heatmap_to_image
from model.keypoints import COCO_KEYPOINTS
from training.datasets import CocoKeypointsDataset, PoseTrackDataset
from training.datasets.layouts import COCO, POSETRACK18
from training.transforms import AugmentConfig

torch.set_num_threads(min(2, torch.get_num_threads()))
CFG = get_preset("tiny-cpu")
H, W = CFG.input_size


def assert_keypoints_in_crop(item):
    kc = item["keypoints_crop"].numpy()
    labelled = item["keypoints"][:, 2].numpy() > 0
    assert labelled.any()
    x, y = kc[labelled, 0], kc[labelled, 1]
    assert ((x >= 0) & (x < W) & (y >= 0) & (y < H)).all(), kc[labelled]
    # keypoints_crop is the image GT through the key frame's affine
    np.testing.assert_allclose(apply_affine(item["keypoints"].numpy()[labelled, :2], item["affine"].numpy()),
                               kc[labelled, :2], atol=1e-3)


def test_posetrack_sample_files(shared_data):
    ds = PoseTrackDataset(shared_data / "posetrack18/annotations/val", shared_data / "posetrack18", CFG,
                          train=False)
    assert ds.layout is POSETRACK18
    assert len(ds) == 14  # every labelled person of the 3 frames
    videos = sorted({s.video for s in ds.samples})
    assert videos == ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"]
    for i in range(len(ds)):
        item = ds[i]
        assert item["frames"].shape == (CFG.window, 3, H, W) and item["frames"].dtype == torch.float32
        assert item["heatmaps"].shape == (17, *CFG.heatmap_size)
        assert item["target_weight"].shape == (17,)
        assert_keypoints_in_crop(item)
        # ears are never labelled in PoseTrack18; labelled joints all get a target
        assert item["target_weight"][3] == 0 and item["target_weight"][4] == 0
        assert item["target_weight"].sum() == (item["keypoints"][:, 2] > 0).sum()
        assert item["head_size"] > 0 and item["track_id"] >= 0
        # only frame 000000 exists on disk: the window clamps onto it
        assert item["window_indices"].tolist() == [0] * CFG.window
        for t in range(1, CFG.window):
            assert torch.equal(item["frames"][t], item["frames"][0])
    # the person crop is centred on the person: decoded targets map back onto the GT in image pixels
    item = ds[1]
    kps = heatmap_to_image(decode_heatmaps(item["heatmaps"][None])[0].numpy(), item["center"].numpy(),
                           item["size"].numpy(), CFG.input_size, CFG.heatmap_size)
    ok = item["target_weight"].numpy() > 0
    cell = float(item["size"][0]) / CFG.heatmap_size[1]
    assert np.abs(kps[ok, :2] - item["keypoints"].numpy()[ok, :2]).max() < 0.1 * cell


def test_posetrack_head_boxes_track_ids_and_ignore_regions(shared_data):
    ds = PoseTrackDataset(shared_data / "posetrack18/annotations/val/009473_mpii_test.json",
                          shared_data / "posetrack18", CFG, train=False)
    raw = json.loads((shared_data / "posetrack18/annotations/val/009473_mpii_test.json").read_text())
    assert [s.track_id for s in ds.samples] == [a["track_id"] for a in raw["annotations"]]
    np.testing.assert_allclose(ds.samples[0].head_box, raw["annotations"][0]["bbox_head"])
    frame = ds.videos[0].frames[0]
    assert len(frame.ignore_regions) == 2 and frame.ignore_regions[0].shape[1] == 2
    assert ds.videos[0].nframes == 101


def test_posetrack_training_items_are_augmented_reproducibly(shared_data):
    def make():
        return PoseTrackDataset(shared_data / "posetrack18/annotations/val", shared_data / "posetrack18", CFG,
                                train=True, seed=5)

    a, b = make(), make()
    x, y = a[3], b[3]
    assert torch.equal(x["frames"], y["frames"]) and torch.equal(x["heatmaps"], y["heatmaps"])
    a.set_epoch(1)
    assert not torch.equal(a[3]["frames"], x["frames"])


def test_coco_sample_file(shared_data):
    ds = CocoKeypointsDataset(shared_data / "coco/test_coco.json", shared_data / "coco", CFG, train=False)
    assert len(ds) == 12  # 14 people, 2 without keypoints skipped
    assert ds.layout.name == "coco"
    for i in range(len(ds)):
        item = ds[i]
        assert_keypoints_in_crop(item)
        for t in range(1, CFG.window):
            assert torch.equal(item["frames"][t], item["frames"][0])  # T copies of the image
        assert item["head_size"] == 0  # COCO has no head boxes
    train = CocoKeypointsDataset(shared_data / "coco/test_coco.json", shared_data / "coco", CFG, train=True,
                                 seed=0)
    item = train[0]  # augmented: same shapes, targets only where the joint is labelled
    assert item["frames"].shape == (CFG.window, 3, H, W)
    assert (item["target_weight"] <= (item["keypoints_crop"][:, 2] > 0).float()).all()
    flipped = CocoKeypointsDataset(shared_data / "coco/test_coco.json", shared_data / "coco", CFG, train=True,
                                   seed=0, augment=AugmentConfig(flip_prob=1.0))[0]
    assert bool(flipped["flipped"])
    perm = list(COCO.flip_perm)
    assert torch.equal(flipped["keypoints_crop"][:, 2], flipped["keypoints"][perm, 2])
    keep_all = CocoKeypointsDataset(shared_data / "coco/test_coco.json", shared_data / "coco", CFG,
                                    train=False, min_keypoints=0)
    assert len(keep_all) == 14


# --------------------------------------------------------------------------- windows on a hand-made clip
def make_clip(root, n_frames=6, labelled=(0, 2, 5), missing=()):
    """A PoseTrack18 clip whose one person moves right by 10 px per frame; frame f has a bright column."""
    (root / "images/val/clip").mkdir(parents=True)
    (root / "annotations/val").mkdir(parents=True)
    images, anns = [], []
    for f in range(n_frames):
        img = np.full((200, 300, 3), 40, np.uint8)
        img[:, 5 + 10 * f] = 250  # frame marker column
        if f not in missing:
            cv2.imwrite(str(root / f"images/val/clip/{f:06d}.jpg"), img)
        image_id = 1000 + f
        images.append({"id": image_id, "file_name": f"images/val/clip/{f:06d}.jpg", "frame_id": image_id,
                       "nframes": n_frames, "is_labeled": f in labelled})
        if f in labelled:
            kps = np.zeros((17, 3))
            kps[5:] = [[100 + 10 * f + (k % 3), 60 + 6 * k, 1] for k in range(12)]
            anns.append({"id": image_id * 100, "image_id": image_id, "track_id": 7,
                         "bbox": [90 + 10 * f, 50, 40, 90], "bbox_head": [100 + 10 * f, 40, 10, 12],
                         "keypoints": kps.reshape(-1).tolist()})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(POSETRACK18.keypoints)}]}
    (root / "annotations/val/clip.json").write_text(json.dumps(data))
    return root


def test_windows_clamp_at_clip_ends_and_use_each_frames_box(tmp_path):
    root = make_clip(tmp_path)
    ds = PoseTrackDataset(root / "annotations/val", root, CFG, train=False)
    by_frame = {s.frame_id - 1000: s for s in ds.samples}
    assert sorted(by_frame) == [0, 2, 5]  # one sample per labelled frame
    assert by_frame[0].window_indices == [0, 0, 0, 1, 2]
    assert by_frame[2].window_indices == [0, 1, 2, 3, 4]
    assert by_frame[5].window_indices == [3, 4, 5, 5, 5]
    # neighbour boxes: the track's own box where that frame is labelled, else the key frame's
    boxes = by_frame[2].boxes
    np.testing.assert_allclose(boxes[0], [90, 50, 40, 90])  # frame 0 labelled
    np.testing.assert_allclose(boxes[1], [110, 50, 40, 90])  # frame 1 unlabelled -> key box (frame 2)
    np.testing.assert_allclose(boxes[4], [110, 50, 40, 90])  # frame 4 unlabelled -> key box
    np.testing.assert_allclose(boxes[2], [110, 50, 40, 90])
    # the frames really are the window's frames: the marker column of frame 1 appears in crop 1
    item = ds[1]
    m = ds[1]["affine"].numpy()
    for t, f in enumerate(item["window_indices"].tolist()):
        col = apply_affine(np.array([[5 + 10 * f, 100.0]]), m)[0]
        x = int(round(col[0]))
        if 2 <= x < W - 2:
            crop = item["frames"][t].numpy()
            assert crop[:, :, x - 1:x + 2].mean() > crop.mean() + 1.0, (t, f)


def test_missing_neighbour_files_clamp_towards_the_key_frame(tmp_path):
    root = make_clip(tmp_path, missing=(3, 4))
    ds = PoseTrackDataset(root / "annotations/val", root, CFG, train=False)
    by_frame = {s.frame_id - 1000: s for s in ds.samples}
    assert by_frame[2].window_indices == [0, 1, 2, 2, 2]
    assert by_frame[5].window_indices == [5, 5, 5, 5, 5]
    shutil.rmtree(root / "images/val/clip")
    with pytest.raises(FileNotFoundError, match="key frame"):
        PoseTrackDataset(root / "annotations/val", root, CFG, train=False)


def test_mixed_layouts_are_refused(tmp_path):
    root = make_clip(tmp_path / "a")
    data = json.loads((root / "annotations/val/clip.json").read_text())
    data["categories"][0]["keypoints"] = list(COCO_KEYPOINTS)
    (root / "annotations/val/coco_clip.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="mix keypoint layouts"):
        PoseTrackDataset(root / "annotations/val", root, CFG, train=False)
