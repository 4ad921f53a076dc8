from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from service.worker.engine import DecodeOptions
from service.worker.modelfiles import ModelNotFound, resolve_model


def test_resolve_model_by_name_and_path(tiny_checkpoint, tmp_path):
    assert resolve_model("test-model", tiny_checkpoint.parent) == ("test-model", tiny_checkpoint.resolve())
    assert resolve_model(str(tiny_checkpoint), tmp_path) == ("test-model", tiny_checkpoint.resolve())
    with pytest.raises(ModelNotFound, match=str(tmp_path / "vidpose-tiny-cpu.safetensors")):
        resolve_model("vidpose-tiny-cpu", tmp_path)
    with pytest.raises(ModelNotFound, match="not found"):
        resolve_model(str(tmp_path / "x.safetensors"), tmp_path)


def test_engine_info_and_decode_options(engine):
    assert engine.name == "test-model" and engine.version == "test-1" and engine.device.type == "cpu"
    assert engine.warm and engine.window == 5
    info = engine.info()
    assert info["name"] == "test-model" and info["window"] == 5 and len(info["keypoint_names"]) == 17
    assert info["skeleton"] and info["config"]["window"] == 5
    assert engine.decode_options() == engine.default_options()
    assert engine.decode_options(diffusion_steps=2, hypotheses=3) == DecodeOptions(2, 3)


def test_decode_with_overrides_restores_config(engine):
    g = torch.Generator().manual_seed(1)
    h, w = engine.input_size
    feats = engine.encode(torch.randn(5, 3, h, w, generator=g))
    assert feats.shape[0] == 5
    windows = feats[None].expand(2, *feats.shape).contiguous()
    base = engine.model.cfg
    det_a = engine.decode(windows, DecodeOptions(0, 1))  # 0 steps: the deterministic head
    det_b = engine.decode(windows, DecodeOptions(0, 1))
    assert engine.model.cfg is base
    np.testing.assert_array_equal(det_a, det_b)
    out = engine.decode(windows, DecodeOptions(2, 2))
    assert engine.model.cfg is base
    assert out.shape == (2, 17, 3) and np.isfinite(out).all()


def test_worker_command_errors(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VIDPOSE_MODELS_DIR": str(tmp_path), "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "service.cli", "worker"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "VIDPOSE_REDIS_URL" in r.stderr
    env["VIDPOSE_REDIS_URL"] = "redis://127.0.0.1:1/0"
    r = subprocess.run([sys.executable, "-m", "service.cli", "worker", "--model", "missing"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and str(tmp_path / "missing.safetensors") in r.stderr


def test_version_without_info_matches_the_api_catalog(tmp_path):
    from model.checkpoint import save_checkpoint
    from model.config import get_preset
    from model.pose_model import PoseModel
    from service.api.catalog import checkpoint_info
    from service.worker.engine import file_version

    model = PoseModel(get_preset("tiny-cpu", depth=1, temporal=False))
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    version = file_version(path, {})
    assert version.startswith("sha256:") and version == checkpoint_info(path)["version"]


def test_seeded_diffusion_noise_does_not_depend_on_the_batch(engine):
    """Per-window seeds (pipeline.window_seed): a window decodes the same alone or in any batch, in any
    order, on any re-run; unseeded decoding of the same windows differs (the noise matters here)."""
    model = engine.model
    saved = {k: v.clone() for k, v in model.diffusion.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # a trained-looking diffusion head: its correction depends on the noise
        for p in model.diffusion.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    try:
        h, w = engine.input_size
        feats = engine.encode(torch.randn(7, 3, h, w, generator=g))
        wins = torch.stack([feats[i:i + 5] for i in range(3)])  # 3 different windows
        opts = DecodeOptions(1, 2)
        seeds = [11, 22, 33]
        batch = engine.decode(wins, opts, seeds=seeds)
        alone = np.concatenate([engine.decode(wins[i:i + 1], opts, seeds=[seeds[i]]) for i in range(3)])
        shuffled = engine.decode(wins[[2, 0, 1]], opts, seeds=[33, 11, 22])[[1, 2, 0]]
        np.testing.assert_array_equal(batch, alone)
        np.testing.assert_array_equal(batch, shuffled)
        np.testing.assert_array_equal(batch, engine.decode(wins, opts, seeds=seeds))
        assert not np.array_equal(engine.decode(wins, opts), engine.decode(wins, opts))  # unseeded
    finally:
        model.diffusion.load_state_dict(saved)


def test_second_worker_on_a_taken_metrics_port_fails_before_loading(tmp_path, redis_server):
    """Two workers on one host: the second fails at once, naming the setting, without loading a model."""
    import socket
    import time

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VIDPOSE_REDIS_URL": redis_server.url,
               "VIDPOSE_MODELS_DIR": str(tmp_path), "VIDPOSE_WORKER_METRICS_PORT": str(port)}
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "service.cli", "worker", "--model", "never-loaded",
                            "--metrics-host", "127.0.0.1"], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, r.stderr
        assert f"127.0.0.1:{port} is already in use" in r.stderr and "VIDPOSE_WORKER_METRICS_PORT" in r.stderr
        assert "never-loaded" not in r.stderr  # failed before looking for the model
        assert time.monotonic() - t0 < 60
    finally:
        holder.close()
