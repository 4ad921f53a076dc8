"""Worker test fixtures: a small random-weight checkpoint (plumbing tests, not accuracy)."""

from __future__ import annotations

import importlib.util

import pytest


def tiny_config(**overrides):
    from model.config import get_preset

    cfg = dict(embed_dim=48, depth=1, num_heads=2, head_channels=16, diffusion_dim=8,
               input_size=(128, 96), heatmap_size=(32, 24), local_window=(4, 3),
               temporal=importlib.util.find_spec("model.temporal") is not None)
    cfg.update(overrides)
    return get_preset("tiny-cpu", **cfg)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from model.checkpoint import save_checkpoint
    from model.pose_model import PoseModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "test-model.safetensors"
    save_checkpoint(PoseModel(tiny_config()), path, info={"version": "test-1"})
    return path


@pytest.fixture(scope="session")
def engine(tiny_checkpoint):
    import torch

    from service.worker.engine import Engine

    torch.set_num_threads(1)
    eng = Engine.load(str(tiny_checkpoint), tiny_checkpoint.parent, device="cpu")
    eng.warmup()
    return eng




@pytest.fixture(scope="session")
def longer_clip(tmp_path_factory, shared_data, make_clip):
    src = shared_data / "videos" / "soccer.mp4"
    return make_clip(tmp_path_factory.mktemp("clips") / "longer.mp4", src, 900)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory, shared_data, make_clip):
    src = shared_data / "videos" / "soccer.mp4"
    return make_clip(tmp_path_factory.mktemp("clips") / "long.mp4", src, 240)
