"""Overfit check: the tiny-cpu model learns the 26 real sample crops (COCO + PoseTrack18).

Trains the default `tiny-cpu` preset (temporal encoder and diffusion head on) for a few hundred
steps on the real sample frames in ../shared/data and scores the same crops. Reaching PCKh@0.5
>= 0.9 proves that targets, loss, heatmap decoding and the crop -> image coordinate mapping agree
(a mistake in any of them caps the score far below). COCO people have no head box, so they are
scored with PCK at 5 % of the box's longer side instead (stricter for these people than PCKh).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.data import build_datasets
from training.evaluate.pck import pck_bbox, pckh
from training.predict import predict
from training.trainer import Trainer


@pytest.mark.slow
def test_tiny_cpu_overfits_real_sample_crops(shared_data, tmp_path):
    d = shared_data
    specs = [f"coco:{d}/coco/test_coco.json:{d}/coco",
             f"posetrack:{d}/posetrack18/annotations/val:{d}/posetrack18"]
    tc = TrainConfig(model="tiny-cpu", train_data=specs, augment=False, steps=300, batch_size=8, lr=1e-3,
                     warmup_steps=20, num_workers=0, out=str(tmp_path / "run"), val_every=0, ckpt_every=0,
                     log_every=50, seed=0, threads=2)
    torch.manual_seed(0)
    trainer = Trainer(tc, progress=False)
    assert trainer.model.cfg.temporal and trainer.model.cfg.diffusion
    trainer.train()

    data = build_datasets(specs, trainer.model.cfg, train=False, augment=False)
    assert len(data) == 26
    p = predict(trainer.model, data, batch_size=8)
    has_head = p.head_size > 0
    posetrack = pckh(p.keypoints[has_head], p.gt[has_head], p.head_size[has_head], thr=0.5)
    coco = pck_bbox(p.keypoints[~has_head], p.gt[~has_head], p.box[~has_head], thr=0.05)
    assert has_head.sum() == 14 and (~has_head).sum() == 12
    assert np.isfinite(p.keypoints).all()
    assert posetrack.mean >= 0.9, f"PCKh@0.5 on the PoseTrack crops: {posetrack.mean:.3f}"
    assert coco.mean >= 0.9, f"PCK@0.05 on the COCO crops: {coco.mean:.3f}"
