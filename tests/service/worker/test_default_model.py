"""The checkpoint `./run serve` serves by default ships with the package, runs, and finds real joints."""

from __future__ import annotations

import json

import cv2
import numpy as np

from model.checkpoint import read_metadata
from model.heatmaps import box_to_center_size, crop_affine, heatmap_to_image, warp_crop
from model.keypoints import COCO_KEYPOINTS
from service.settings import PACKAGE_MODELS_DIR, Settings
from service.worker.engine import Engine


def test_default_checkpoint_ships_loads_and_finds_real_joints(shared_data):
    s = Settings(_env_file=None)
    path = PACKAGE_MODELS_DIR / f"{s.default_model}.safetensors"
    assert path.is_file(), f"default checkpoint missing: {path}"
    assert path.stat().st_size <= 30 * 2**20
    meta = read_metadata(path)
    cfg = meta["config"]
    assert cfg.backbone == "movenet" and cfg.input_size == (256, 256)
    assert meta["keypoints"] == list(COCO_KEYPOINTS)
    assert meta["info"]["license"] == "Apache-2.0" and "Google" in meta["info"]["attribution"]

    engine = Engine.load(s.default_model, PACKAGE_MODELS_DIR, device="cpu")
    coco = json.loads((shared_data / "coco" / "test_coco.json").read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    hits = total = 0
    for ann in [a for a in coco["annotations"] if a["num_keypoints"] >= 10][:4]:
        rgb = cv2.imread(str(shared_data / "coco" / files[ann["image_id"]]))[:, :, ::-1]
        center, size = box_to_center_size(ann["bbox"], engine.input_size)
        crop = engine.input_spec.normalize(warp_crop(rgb, crop_affine(center, size, engine.input_size),
                                                     engine.input_size))
        feats = engine.encode(np.stack([crop] * engine.window))[None]
        kps = heatmap_to_image(engine.decode(feats)[0], center, size, engine.input_size, engine.heatmap_size)
        gt = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        seen = gt[:, 2] > 0
        err = np.linalg.norm(kps[seen, :2] - gt[seen, :2], axis=1)
        hits += int((err <= 0.1 * max(ann["bbox"][2:])).sum())
        total += int(seen.sum())
        assert ((kps[:, 2] >= 0) & (kps[:, 2] <= 1)).all()
    assert hits / total >= 0.75, f"PCK@0.1 {hits / total:.2f} on real COCO people"
