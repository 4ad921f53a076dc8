"""`vidpose synth` -> `vidpose train` -> `vidpose eval --checkpoint` -> `vidpose export`, through the CLI."""

from __future__ import annotations

import json

from model.checkpoint import read_metadata
from service.cli import main

TINY = [arg for kv in ("embed_dim=32", "depth=1", "num_heads=2", "head_channels=16",
                       "temporal_dim=16", "temporal_stride=16", "diffusion_dim=16") for arg in ("--set", kv)]


def test_synth_train_eval_export(tmp_path, capsys):
    data = tmp_path / "synth"
    assert main(["synth", "--out", str(data), "--clips", "3", "--frames", "8", "--seed", "3"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--config", "tiny-cpu", "--data", f"synth:{data}", "--out", str(run),
                 "--steps", "2", "--batch-size", "4", "--no-progress", *TINY]) == 0
    meta = read_metadata(run / "best.safetensors")
    # Trained on PoseTrack-layout data: the checkpoint names its slots accordingly.
    assert meta["keypoints"][1:3] == ["head_bottom", "head_top"]
    assert meta["config"].embed_dim == 32

    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run / "best.safetensors"), "--data", f"synth:{data}",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PoseTrack mAP, all frames" in printed and "| Total |" in printed
    res = json.loads(out.read_text())
    assert 0.0 <= res["map"]["total"] <= 100.0 and res["people"] > 0
    assert "map_occluded_frames" in res and "single_frame" in res

    served = tmp_path / "models" / "m.safetensors"
    assert main(["export", str(run), str(served), "--description", "test"]) == 0
    info = read_metadata(served)["info"]
    assert info["description"] == "test" and info["train_data"] == [f"synth:{data}"]
    half = tmp_path / "models" / "h.safetensors"
    assert main(["export", str(run), str(half), "--fp16", "--diffusion-steps", "0", "--hypotheses", "4"]) == 0
    assert half.stat().st_size < 0.6 * served.stat().st_size
    cfg = read_metadata(half)["config"]
    assert (cfg.diffusion_steps, cfg.hypotheses) == (0, 4)


def test_train_rejects_bad_input(tmp_path, capsys):
    assert main(["train", "--config", "no-such-preset", "--data", "synth:x"]) == 2
    assert "neither a config file" in capsys.readouterr().err
    assert main(["train", "--config", "tiny-cpu", "--data", "weird:x", "--out", str(tmp_path / "r")]) == 2
    assert "unknown kind" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.safetensors"), "--data", "synth:x"]) == 2
    assert main(["export", str(tmp_path / "norun"), str(tmp_path / "o.safetensors")]) == 2
