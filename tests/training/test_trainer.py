"""Trainer: a 2-step run writes a run directory, resumes from it, and exports a servable checkpoint."""

from __future__ import annotations

import csv

import pytest
import torch

from model.checkpoint import load_checkpoint, read_metadata
from training.config import TrainConfig
from training.export import export_run
from training.trainer import Trainer, lr_factor

# A very small model: the loop is under test here, not accuracy.
SMALL = dict(embed_dim=32, depth=1, num_heads=2, head_channels=16, temporal_dim=16, temporal_stride=16,
             diffusion_dim=16, local_window=(4, 4))


def _config(shared_data, out, steps, **kw) -> TrainConfig:
    d = shared_data
    return TrainConfig(
        model="tiny-cpu", model_overrides=dict(SMALL), steps=steps, batch_size=4, num_workers=0,
        train_data=[f"coco:{d}/coco/test_coco.json:{d}/coco"],
        val_data=[f"posetrack:{d}/posetrack18/annotations/val:{d}/posetrack18"],
        out=str(out), log_every=1, val_every=2, ckpt_every=1, warmup_steps=1, **kw)


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, warmup=10, total=100, min_ratio=0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(0.1, abs=1e-3)


def test_two_steps_then_resume_then_export(shared_data, tmp_path):
    torch.manual_seed(0)
    run = tmp_path / "run"
    metrics = Trainer(_config(shared_data, run, steps=2), progress=False).train()
    for name in ("config.yaml", "last.safetensors", "best.safetensors", "trainer_state.pt",
                 "train_log.csv", "val_log.csv"):
        assert (run / name).is_file(), name
    assert 0.0 <= metrics["pck"] <= 1.0 and metrics["num_people"] == 14
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(float(r["loss"]) > 0 for r in rows)
    saved_cfg = TrainConfig.load(str(run / "config.yaml"))
    assert saved_cfg.steps == 2 and saved_cfg.model_overrides["embed_dim"] == 32

    with pytest.raises(FileExistsError, match="--resume"):  # a fresh start never mixes into a run
        Trainer(_config(shared_data, run, steps=4), progress=False)

    # Resume continues from step 2 with the saved optimizer state, to step 4.
    before, _ = load_checkpoint(run / "last.safetensors")
    tr = Trainer(_config(shared_data, run, steps=4), resume=True, progress=False)
    assert tr.step == 2
    pairs = zip(before.state_dict().values(), tr.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
    assert tr.optimizer.state_dict()["state"], "optimizer moments must be restored"
    tr.train()
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert read_metadata(run / "last.safetensors")["info"]["step"] == 4

    # Export: metadata carries data, metrics, version; a worker engine loads it by name.
    models = tmp_path / "models"
    export_run(run, models / "my-model.safetensors")
    meta = read_metadata(models / "my-model.safetensors")
    info = meta["info"]
    assert info["train_data"] and info["vidpose_version"] and "pck" in info["metrics"]
    from service.worker.engine import Engine

    engine = Engine.load("my-model", models, device="cpu")
    assert engine.window == 5 and engine.warmup(batch=1) >= 0


def test_resume_without_run_fails_clearly(shared_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(_config(shared_data, tmp_path / "empty", steps=2), resume=True, progress=False)


def test_unknown_config_key_is_rejected(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: tiny-cpu\nstepz: 3\n")
    with pytest.raises(ValueError, match="stepz"):
        TrainConfig.load(str(p))
