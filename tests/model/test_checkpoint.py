"""safetensors checkpoints: round trip, metadata, mismatch errors, non-vidpose files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_into,
    read_metadata,
    save_checkpoint,
)
from model.commands import register
from model.config import get_preset
from model.keypoints import COCO_KEYPOINTS, COCO_SKELETON
from model.pose_model import PoseModel

SMALL = dict(embed_dim=64, depth=2, num_heads=2, head_channels=32, temporal_dim=16, temporal_stride=16,
             diffusion_dim=16, hypotheses=2)


def _cfg(**kw):
    return get_preset("tiny-cpu", **{**SMALL, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model whose zero-init parts are non-zero (as after training), saved once."""
    torch.manual_seed(0)
    model = PoseModel(_cfg())
    with torch.no_grad():
        model.temporal_proj.weight.normal_(0, 0.5)
        model.diffusion.out.weight.normal_(0, 0.3)
        model.keypoint_head.deconv_layers[1].running_mean.uniform_(-1, 1)
    model.eval()
    path = tmp_path_factory.mktemp("ck") / "model.safetensors"
    save_checkpoint(model, path, info={"epoch": 3, "pckh": 0.93})
    return model, path


def test_checkpoint_file_is_world_readable(trained):
    """Written through a private temp file, but the model file itself is 0644 (workers run as other users)."""
    _, path = trained
    assert path.stat().st_mode & 0o777 == 0o644
    assert not list(path.parent.glob(".*tmp*"))


def test_model_info_into_a_closed_pipe_is_quiet(trained):
    """`vidpose model-info F | head`: the reader is gone before we write; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    _, path = trained
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "model-info", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # long before the interpreter has started and printed anything
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_round_trip_gives_identical_outputs(trained):
    model, path = trained
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    frames = torch.randn(2, 5, 3, 256, 192)
    with torch.inference_mode():
        a = model(frames, generator=torch.Generator().manual_seed(1))
        b = loaded(frames, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a["heatmaps"], b["heatmaps"]) and torch.equal(a["base_heatmaps"], b["base_heatmaps"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert meta["config"] == model.cfg
    assert meta["info"] == {"epoch": 3, "pckh": 0.93}
    assert meta["keypoints"] == list(COCO_KEYPOINTS)
    assert meta["skeleton"] == [list(p) for p in COCO_SKELETON]


def test_read_metadata_is_header_only(trained):
    model, path = trained
    meta = read_metadata(path)
    assert meta["config"] == model.cfg and meta["format_version"] == "1"
    n = sum(v.numel() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert meta["num_parameters"] == n
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temp file


def test_mismatched_config_names_the_fields(trained, tmp_path):
    _, path = trained
    other = _cfg(embed_dim=96, num_heads=3, temporal=False)
    want = r"embed_dim: 64 vs 96.*num_heads: 2 vs 3.*temporal: True vs False"
    with pytest.raises(CheckpointError, match=want):
        load_checkpoint(path, expect_config=other)
    with pytest.raises(CheckpointError, match="embed_dim: 64 vs 96"):
        load_state_into(PoseModel(other), path)
    # Runtime-only fields may differ.
    model, _ = load_checkpoint(path, expect_config=_cfg(hypotheses=5, name="x"))
    assert model.cfg.hypotheses == 2
    model, meta = load_checkpoint(path, overrides={"hypotheses": 1, "diffusion_steps": 2})
    assert model.cfg.hypotheses == 1 and meta["config"].diffusion_steps == 2
    with pytest.raises(CheckpointError, match="embed_dim"):
        load_checkpoint(path, overrides={"embed_dim": 8})


def test_load_state_into_existing_model(trained):
    model, path = trained
    fresh = PoseModel(_cfg(freeze_backbone=True))  # runtime field differs: fine
    meta = load_state_into(fresh, path)
    assert meta["info"]["epoch"] == 3
    assert torch.equal(fresh.temporal_proj.weight, model.temporal_proj.weight)


def test_tampered_weights_fail_with_key_names(trained, tmp_path):
    _, path = trained
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    del tensors["temporal_proj.bias"]
    tensors["keypoint_head.final_layer.bias"] = torch.zeros(5)
    tensors["surprise"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    want = (r"missing keys \['temporal_proj.bias'\].*unexpected keys \['surprise'\]"
            r".*final_layer.bias: file \(5,\) vs model \(17,\)")
    with pytest.raises(CheckpointError, match=want):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_non_vidpose_files_fail_clearly(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a vidpose checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_metadata(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="no such model file"):
        read_metadata(tmp_path / "missing.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "v9.safetensors"),
              metadata={"format": "vidpose", "format_version": "9", "config": "{}"})
    with pytest.raises(CheckpointError, match="format_version 9"):
        read_metadata(tmp_path / "v9.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "badcfg.safetensors"),
              metadata={"format": "vidpose", "format_version": "1", "config": json.dumps({"bogus": 1})})
    with pytest.raises(CheckpointError, match="bad config"):
        read_metadata(tmp_path / "badcfg.safetensors")


def test_custom_keypoints_and_model_info_cli(tmp_path, capsys):
    model = PoseModel(_cfg(num_keypoints=3, temporal=False, diffusion=False))
    with pytest.raises(ValueError, match="3 keypoints"):
        save_checkpoint(model, tmp_path / "x.safetensors", keypoints=["a"])
    save_checkpoint(model, tmp_path / "m.safetensors", keypoints=["a", "b", "c"], skeleton=[[0, 1]])
    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta["keypoints"] == ["a", "b", "c"] and meta["skeleton"] == [[0, 1]]

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["model-info", str(tmp_path / "m.safetensors")])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["config"]["num_keypoints"] == 3 and printed["keypoints"] == ["a", "b", "c"]
    args = parser.parse_args(["model-info", str(tmp_path / "nope.safetensors")])
    assert args.func(args) == 2
    assert "no such model file" in capsys.readouterr().err
