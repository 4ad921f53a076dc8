"""The temporal-path recipe on a real clip: teacher labels -> feature cache -> distillation -> PCK.

soccer.poses.json is the served model's own `vidpose estimate` result for ../shared/data/videos/
soccer.mp4 (5 frames, 3 players), i.e. exactly what the recipe's first step writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.pose_model import PoseModel
from training.datasets.features import CachedFeatureWindows
from training.datasets.teacher import key_samples, load_labels, split_frames
from training.evaluate.temporal_eval import evaluate_windows, summary
from training.feature_cache import build_cache, crop, read_frames

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "tests" / "fixtures" / "teacher" / "soccer.poses.json"
CHECKPOINT = REPO / "service" / "models" / "vidpose-movenet-thunder.safetensors"


def test_labels_and_key_samples():
    labels = load_labels(LABELS)
    assert labels.num_frames == 5 and len(labels.keypoint_names) == 17
    samples = key_samples(labels, range(0, 5), window=5, min_joints=8)
    assert samples, "the served model is confident on some soccer players"
    for s in samples:
        assert len(s.window) == 5 and s.window[2] == s.frame
        assert all((f, s.track) in labels.boxes for f in s.window)  # clamped to frames the track is in
        assert int((labels.keypoints[(s.frame, s.track)][:, 2] >= 0.3).sum()) >= 8
    strict = key_samples(labels, range(0, 5), window=5, min_joints=17)
    assert len(strict) < len(samples)
    held_out = key_samples(labels, split_frames(5, "val", 0.4), window=5)
    assert all(f >= 3 for s in held_out for f in s.window)  # never borrows training frames
    assert split_frames(10, "train", 0.2) == range(0, 8) and split_frames(10, "val", 0.2) == range(8, 10)


@pytest.fixture(scope="module")
def caches(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("cache")
    clip = shared_data / "videos" / "soccer.mp4"
    train = build_cache(CHECKPOINT, clip, LABELS, root / "train", split="all", variants=2, threads=1,
                        progress=False)
    val = build_cache(CHECKPOINT, clip, LABELS, root / "val", split="val", val_fraction=1.0, threads=1,
                      progress=False)
    return root, train, val, clip


def test_cache_holds_the_service_crops_features(caches):
    root, info, _, clip = caches
    model, _ = load_checkpoint(CHECKPOINT)
    labels = load_labels(LABELS)
    data = CachedFeatureWindows(root / "train", model.cfg, train=True, corrupt_prob=0.0)
    assert len(data) == info["samples"] and info["corrupt_crops"] == 2 * info["samples"]
    s = data.samples[0]
    image = read_frames(clip, {s["frame"]})[s["frame"]]
    from model.backbones import input_spec

    x = torch.from_numpy(crop(image, labels.boxes[(s["frame"], s["track"])], input_spec(model.cfg)))[None]
    with torch.no_grad():
        want = model.encode_frames(x)[0]
    got = data[0]["clean_key"]
    assert torch.allclose(got, want, atol=0.05 * float(want.abs().max())), float((got - want).abs().max())
    item = data[0]
    assert item["kind"] == -1 and torch.equal(item["features"][2], item["clean_key"])
    corrupted = CachedFeatureWindows(root / "train", model.cfg, train=True, corrupt_prob=1.0, seed=0)[0]
    assert corrupted["kind"] >= 0 and not torch.equal(corrupted["features"][2], corrupted["clean_key"])
    assert torch.equal(corrupted["features"][[0, 1, 3, 4]], item["features"][[0, 1, 3, 4]])


def test_val_cache_lists_each_sample_clean_and_corrupted(caches):
    root, _, val, _ = caches
    data = CachedFeatureWindows(root / "val", train=False)
    assert len(data) == 2 * val["samples"]
    kinds = [data[i]["kind"] for i in range(len(data))]
    assert kinds.count(-1) == val["samples"]
    with pytest.raises(ValueError, match="cached for"):
        model, _ = load_checkpoint(CHECKPOINT)
        CachedFeatureWindows(root / "val", model.cfg.replace(window=3), train=False)


def _temporal_model(**overrides) -> PoseModel:
    single, meta = load_checkpoint(CHECKPOINT)
    cfg = meta["config"].replace(**{"temporal": True, "diffusion": True, "freeze_backbone": "single-frame",
                                    **overrides})
    model = PoseModel(cfg)
    model.load_state_dict(single.state_dict(), strict=False)
    return model


def test_untrained_temporal_model_is_its_single_frame_branch(caches):
    root = caches[0]
    model = _temporal_model()
    data = CachedFeatureWindows(root / "val", model.cfg, train=False)
    result = evaluate_windows(model, data, {"temporal": (0, 1), "K=3": (1, 3)}, batch_size=16)
    for group, row in result["rows"].items():
        assert row["temporal"] == row["base"] == row["K=3"], (group, row)  # zero-init: nothing changes
    assert result["rows"]["clean"]["base"] == 100.0  # the teacher is the clean single-frame branch
    assert result["rows"]["corrupted"]["base"] < 100.0
    assert set(summary(result, "temporal")) == {"pck", "pck_base", "pck_clean", "pck_clean_base"}
    # zero-initialised corrections: the K hypotheses are the same heatmap up to rounding (spread ~0 px),
    # while the keypoint score already tells wrong joints from right ones
    spread = result["spread"]["K=3"]
    assert spread["right"] == spread["wrong"] == 0.0  # rounded to 3 decimals
    assert 0.5 < spread["score_auroc"] <= 1.0


def test_distill_loss_is_zero_on_clean_windows_and_trains_only_the_temporal_path(caches):
    root = caches[0]
    torch.manual_seed(0)
    model = _temporal_model().train()
    data = CachedFeatureWindows(root / "train", model.cfg, train=True, corrupt_prob=1.0, seed=0)
    batch = [data[i] for i in range(min(4, len(data)))]
    feats = torch.stack([b["features"] for b in batch])
    clean = torch.stack([b["clean_key"] for b in batch])
    w = torch.stack([b["target_weight"] for b in batch])
    clean_window = feats.clone()
    clean_window[:, 2] = clean
    with torch.no_grad():
        zero = model.distill_loss(clean_window, clean, w)
    assert float(zero["heatmap_loss"]) == 0.0 and float(zero["feature_loss"]) == 0.0
    loss = model.distill_loss(feats, clean, w)
    assert float(loss["heatmap_loss"]) > 0.05 and float(loss["feature_loss"]) > 0.01
    loss["loss"].backward()
    for name, p in model.named_parameters():
        frozen = name.startswith(("backbone.", "keypoint_head."))
        assert (p.grad is None) == frozen, name

    # a few steps on two windows (no diffusion: its loss is not what is checked) bring the fused
    # features and heatmaps toward the clean frame's
    torch.manual_seed(0)
    small = _temporal_model(diffusion=False).train()
    opt = torch.optim.AdamW([p for p in small.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(6):
        out = small.distill_loss(feats, clean, w)
        losses.append(float(out["loss"].detach()))
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(small.parameters(), 1.0)
        opt.step()
    assert losses[-1] < 0.95 * losses[0] and losses[-1] < losses[-2], losses


def test_cache_refuses_labels_without_confident_people(tmp_path, shared_data):
    import json

    data = json.loads(LABELS.read_text())
    for frame in data["frames"]:
        for inst in frame["instances"]:
            inst["keypoints"] = [[x, y, 0.01] for x, y, _ in inst["keypoints"]]
    bad = tmp_path / "unsure.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no confident key samples"):
        build_cache(CHECKPOINT, shared_data / "videos" / "soccer.mp4", bad, tmp_path / "c", progress=False)


def test_cache_draws_only_the_asked_kinds_and_refuses_unknown_ones(tmp_path, shared_data):
    clip = shared_data / "videos" / "soccer.mp4"
    info = build_cache(CHECKPOINT, clip, LABELS, tmp_path / "cross", split="val", val_fraction=1.0,
                       kinds=("cross",), threads=1, progress=False)
    data = CachedFeatureWindows(tmp_path / "cross", train=False)
    assert info["kinds"] == ["cross"] and {s["kinds"][0] for s in data.samples} == {"cross"}
    bad = np.load(tmp_path / "cross" / "corrupt.npy")
    clean = np.load(tmp_path / "cross" / "clean.npy")
    keys = [s["window"][len(s["window"]) // 2] for s in data.samples]
    assert all(not np.array_equal(bad[s["corrupt"][0]], clean[k]) for s, k in zip(data.samples, keys))
    with pytest.raises(ValueError, match="unknown corruption kinds"):
        build_cache(CHECKPOINT, clip, LABELS, tmp_path / "rain", kinds=("rain",), progress=False)
    from service.cli import main

    assert main(["cache-features", str(CHECKPOINT), str(clip), str(LABELS), str(tmp_path / "rain"),
                 "--kinds", "blur,rain"]) == 2


def test_eval_temporal_names_each_caches_kinds_right(caches, tmp_path, shared_data):
    """A default cache and a cross-only one number their kinds differently; scored together, each row
    keeps its own kind's joints."""
    import json

    from service.cli import main

    root, _, val, _ = caches
    build_cache(CHECKPOINT, shared_data / "videos" / "soccer.mp4", LABELS, tmp_path / "cross", split="val",
                val_fraction=1.0, kinds=("cross",), threads=1, progress=False)
    alone, both = tmp_path / "alone.json", tmp_path / "both.json"
    assert main(["eval-temporal", str(CHECKPOINT), str(root / "val"), "--hypotheses", "1",
                 "--out", str(alone)]) == 0
    assert main(["eval-temporal", str(CHECKPOINT), str(root / "val"), str(tmp_path / "cross"),
                 "--hypotheses", "1", "--out", str(both)]) == 0
    rows_alone, rows_both = (json.loads(p.read_text())["rows"] for p in (alone, both))
    assert "cross" not in rows_alone and rows_both["cross"]["n_joints"] > 0
    for kind, row in rows_alone.items():
        if kind not in ("clean", "corrupted"):
            assert rows_both[kind] == row, kind  # the cross cache's windows went to "cross" only


def test_natural_occlusion_windows(caches):
    from training.evaluate.natural_occlusion import drop_windows, evaluate_drops

    root = caches[0]
    assert drop_windows(root / "train", drop=0.0) == []  # nothing falls below 0 x its neighbours
    windows = drop_windows(root / "train", drop=10.0)  # every frame with confident t-2 and t+2
    assert windows and all(w["frame"] == 2 for w in windows)  # 5 frames: only frame 2 has both
    for w in windows:
        assert len(w["rows"]) == 5 and np.isfinite(w["target"]).all() and w["target"][:, 2].sum() >= 8
    model = _temporal_model(diffusion=False)
    result = evaluate_drops(model, root / "train", drop=10.0)
    assert result["windows"] == len(windows) and result["base"] == result["temporal"]  # zero-init
    assert result["base"] > 50.0  # the midpoint of t-2 and t+2 is near where the teacher sees the joint
    assert result["either"] == result["base"]  # zero-init: both branches right on the same joints


def test_train_only_leaves_everything_else_as_it_was(caches):
    """train_only: ["diffusion."] (fitting the diffusion head on a finished temporal model): only its
    parameters get gradients; an unknown prefix is refused."""
    root = caches[0]
    torch.manual_seed(0)
    model = _temporal_model()
    model.train_only(["diffusion."])
    data = CachedFeatureWindows(root / "train", model.cfg, train=True, corrupt_prob=1.0, seed=0)
    batch = [data[i] for i in range(min(4, len(data)))]
    out = model.distill_loss(*(torch.stack([b[k] for b in batch]) for k in ("features", "clean_key",
                                                                              "target_weight")))
    out["loss"].backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained and all(n.startswith("diffusion.") for n in trained)
    groups = model.optimizer_groups(0.01)
    assert sum(len(g["params"]) for g in groups) == len(trained)
    with pytest.raises(ValueError, match="no parameter starts with"):
        model.train_only(["difusion."])


def test_auroc():
    from training.evaluate.temporal_eval import auroc

    assert auroc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])) == 0.0
    assert auroc(torch.zeros(5), torch.zeros(7)) == 0.5  # all tied: tells nothing
    assert auroc(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])) == 0.5
    assert auroc(torch.tensor([1.0]), torch.tensor([0.0, 1.0, 2.0])) == 0.5


def test_recrop_rule_on_a_cache_rebuilds_the_cached_frames(caches):
    """evaluate_key_samples decides the re-crop rule as the worker does and rebuilds each corrupted key
    frame from the clip with the cache's seed: it raises unless those are the cached ones. Off (a
    ratio nothing falls under), nothing changes; at 10 with no floor on the neighbours it fires on
    every window whose outermost neighbours are really there (5 frames: key frame 2 only)."""
    from training.evaluate.natural_occlusion import evaluate_drops
    from training.evaluate.recrop import evaluate_key_samples, format_recrop

    root = caches[0]
    model = _temporal_model(diffusion=False, recrop_drop=1e-9)
    off = evaluate_key_samples(model, root / "val", threads=1)
    assert off["clean"]["fired"] == 0 and off["corrupted"]["fired"] == 0
    for row in off.values():
        assert row["base+recrop"] == row["base"] and row["served+recrop"] == row["served"]
    assert off["clean"]["base"] == 100.0  # the clean key frame is the teacher's own input
    model.cfg = model.cfg.replace(recrop_drop=10.0, recrop_min_confidence=0.0)
    on = evaluate_key_samples(model, root / "val", threads=1)
    index = CachedFeatureWindows(root / "val", model.cfg, train=False).samples
    assert on["clean"]["fired"] == sum(1 for s in index if s["frame"] == 2) > 0
    assert on["clean"]["base+recrop"] > 50.0  # soccer at 30 fps: the mean box is near the key frame's
    assert "| clean |" in format_recrop(on)
    drops = evaluate_drops(model, root / "train", drop=10.0)
    assert drops["recrop_fired"] == drops["windows"] > 0 and drops["base+recrop"] > 50.0
