"""PoseModel: shapes for every preset, zero-init property, split serving path, training loss."""

from __future__ import annotations

import pytest
import torch

from model.config import PRESETS, get_preset
from model.pose_model import PoseModel

# A small model with every part switched on (fast on CPU).
SMALL = dict(embed_dim=64, depth=2, num_heads=2, head_channels=32, temporal_dim=16, temporal_stride=16,
             diffusion_dim=16, hypotheses=3, diffusion_steps=2)


def small_cfg(**kw):
    return get_preset("tiny-cpu", **{**SMALL, **kw})


def _frames(b=2, seed=0, cfg=None):
    cfg = cfg or small_cfg()
    return torch.randn(b, cfg.window, 3, *cfg.input_size, generator=torch.Generator().manual_seed(seed))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _train_like(model, seed=0):
    """Stand-in for training: make the zero-initialised residuals (temporal proj, diffusion out) non-zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [model.temporal_proj.weight, model.temporal_proj.bias] if model.cfg.temporal else []:
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        if model.cfg.diffusion:
            model.diffusion.out.weight.copy_(torch.randn(model.diffusion.out.weight.shape, generator=g) * 0.3)
    return model


@pytest.mark.parametrize("name", ["tiny-cpu", "small"])
def test_cpu_presets_run(name):
    cfg = get_preset(name)
    model = PoseModel(cfg).eval()
    with torch.inference_mode():
        out = model(_frames(1, cfg=cfg), generator=_gen())
    k, (h, w) = cfg.num_keypoints, cfg.heatmap_size
    assert out["heatmaps"].shape == out["base_heatmaps"].shape == (1, k, h, w) == (1, 17, 64, 48)
    assert torch.isfinite(out["heatmaps"]).all()
    kps = model.decode_heatmaps(out["heatmaps"])
    assert kps.shape == (1, 17, 3)


@pytest.mark.parametrize("name", ["base", "large", "huge"])
def test_gpu_presets_shapes_on_meta(name):
    """Full-size presets on the meta device: the backbone at the real input size, then the whole
    model (temporal at the preset's stride, diffusion) on a small input — the pure-PyTorch scan's
    loop is slow to trace on meta at 1/4 of 256x192."""
    cfg = get_preset(name)
    with torch.device("meta"):
        model = PoseModel(cfg).eval()
    frames = torch.empty(2 * cfg.window, 3, *cfg.input_size, device="meta")
    assert model.encode_frames(frames).shape == (2 * cfg.window, cfg.embed_dim, 16, 12)
    n = sum(p.numel() for p in model.backbone.parameters())
    expected = {"base": 86e6, "large": 303e6, "huge": 630e6}[name]  # ViT-B/L/H sizes
    assert abs(n - expected) / expected < 0.03, n

    small_input = cfg.replace(input_size=(64, 48), heatmap_size=(16, 12))
    with torch.device("meta"):
        model = PoseModel(small_input).eval()
    out = model(torch.empty(2, cfg.window, 3, 64, 48, device="meta"))
    assert out["heatmaps"].shape == out["base_heatmaps"].shape == (2, 17, 16, 12)


def test_untrained_temporal_and_diffusion_leave_the_single_frame_output_unchanged():
    torch.manual_seed(0)
    model = PoseModel(small_cfg()).eval()
    single = PoseModel(small_cfg(temporal=False, diffusion=False)).eval()
    missing = single.load_state_dict(model.state_dict(), strict=False)
    assert not missing.missing_keys
    frames = _frames()
    with torch.inference_mode():
        out = model(frames, generator=_gen(1))
        ref = single(frames)
    assert torch.equal(out["base_heatmaps"], ref["base_heatmaps"])
    assert torch.equal(out["heatmaps"], out["base_heatmaps"])  # exactly, not approximately
    assert torch.equal(ref["heatmaps"], ref["base_heatmaps"])


def test_temporal_encoder_is_wired_in():
    torch.manual_seed(0)
    model = _train_like(PoseModel(small_cfg(diffusion=False))).eval()
    frames = _frames()
    other = frames.clone()
    other[:, 1] = torch.randn_like(other[:, 1])  # change a non-key frame only
    with torch.inference_mode():
        a, b = model(frames), model(other)
    assert torch.equal(a["base_heatmaps"], b["base_heatmaps"])  # base = key frame only
    assert (a["heatmaps"] - a["base_heatmaps"]).abs().max() > 1e-4
    assert (a["heatmaps"] - b["heatmaps"]).abs().max() > 1e-6

    single = PoseModel(small_cfg(temporal=False, diffusion=False)).eval()
    with torch.inference_mode():
        assert torch.equal(single(frames)["heatmaps"], single(other)["heatmaps"])


def test_encode_frames_then_decode_windows_equals_forward():
    torch.manual_seed(0)
    model = _train_like(PoseModel(small_cfg())).eval()
    frames = _frames()
    with torch.inference_mode():
        fwd = model(frames, generator=_gen(3))
        feats = model.encode_frames(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])
        split = model.decode_windows(feats, generator=_gen(3))
        again = model.decode_windows(feats, generator=_gen(4))
    for k in ("heatmaps", "base_heatmaps"):
        assert torch.allclose(fwd[k], split[k], atol=1e-5), k
    assert (again["heatmaps"] - split["heatmaps"]).abs().max() > 1e-5  # diffusion noise really is used


def test_per_frame_feature_reuse_over_a_clip():
    """Serving path: encode each video frame once, build clamped windows from the cache."""
    torch.manual_seed(0)
    cfg = small_cfg(diffusion=False)
    model = _train_like(PoseModel(cfg)).eval()
    clip = torch.randn(4, 3, *cfg.input_size, generator=_gen(5))  # 4 frames of one person (same crop)
    n, half = clip.shape[0], cfg.window // 2
    idx = [[min(max(t + d, 0), n - 1) for d in range(-half, half + 1)] for t in range(n)]
    with torch.inference_mode():
        cache = model.encode_frames(clip)
        reuse = model.decode_windows(cache[torch.tensor(idx)])
        direct = model(clip[torch.tensor(idx)])
    assert torch.allclose(reuse["heatmaps"], direct["heatmaps"], atol=1e-5)


def test_bad_shapes_are_rejected():
    model = PoseModel(small_cfg()).eval()
    with pytest.raises(ValueError, match="T=5"):
        model(torch.zeros(1, 3, 3, 256, 192))
    with pytest.raises(ValueError, match="T=5"):
        model.decode_windows(torch.zeros(1, 64, 16, 12))
    with pytest.raises(ValueError, match="diffusion_init"):
        PoseModel(small_cfg(diffusion_init="prio"))
    with pytest.raises(ValueError, match="heatmap_size"):
        PoseModel(small_cfg(heatmap_size=(32, 24)))


def test_training_loss_and_frozen_backbone():
    torch.manual_seed(0)
    model = PoseModel(small_cfg(freeze_backbone=True))
    model.train()
    assert not model.backbone.training and model.keypoint_head.training
    frames = _frames()
    target = torch.rand(2, 17, 64, 48)
    weight = torch.ones(2, 17)
    weight[0, 3] = 0
    losses = model.training_loss(frames, target, weight, generator=_gen())
    assert set(losses) == {"loss", "base_loss", "temporal_loss", "diffusion_loss"}
    total = losses["base_loss"] + losses["temporal_loss"] + losses["diffusion_loss"]
    assert torch.allclose(losses["loss"], total)
    losses["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.temporal_proj.weight.grad.abs().sum() > 0  # the zero-init projection learns first
    assert model.diffusion.out.weight.grad.abs().sum() > 0
    assert model.keypoint_head.final_layer.weight.grad.abs().sum() > 0

    single = PoseModel(small_cfg(temporal=False, diffusion=False))
    assert set(single.training_loss(frames, target, weight)) == {"loss", "base_loss"}


def test_target_weight_masks_joints():
    torch.manual_seed(0)
    model = PoseModel(small_cfg(temporal=False, diffusion=False)).eval()
    frames = _frames(1)
    target = torch.rand(1, 17, 64, 48)
    w = torch.zeros(1, 17)
    w[0, 5] = 1
    base = model.training_loss(frames, target, w)["loss"]
    target2 = target.clone()
    target2[0, 6] += 1.0  # a zero-weight joint: no effect
    assert torch.equal(model.training_loss(frames, target2, w)["loss"], base)
    target2[0, 5] += 1.0
    assert model.training_loss(frames, target2, w)["loss"] > base


@pytest.mark.slow
def test_tiny_model_overfits_a_batch():
    """A few Adam steps on one batch must cut every loss term (the model is trainable end to end)."""
    torch.manual_seed(0)
    cfg = small_cfg()
    model = PoseModel(cfg)
    frames = _frames(1)
    ys = torch.arange(64).view(1, 1, 64, 1).float()
    xs = torch.arange(48).view(1, 1, 1, 48).float()
    cx, cy = torch.rand(1, 17, 1, 1) * 40 + 4, torch.rand(1, 17, 1, 1) * 56 + 4
    target = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 18.0)
    weight = torch.ones(1, 17)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    gen = _gen()
    first = None
    for _ in range(8):
        losses = model.training_loss(frames, target, weight, generator=gen)
        if first is None:
            first = {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    last = {k: v.item() for k, v in model.training_loss(frames, target, weight, generator=gen).items()}
    for k in ("base_loss", "temporal_loss"):
        assert last[k] < 0.7 * first[k], (k, first, last)
    assert PRESETS["tiny-cpu"].temporal  # the preset this stands in for trains the same parts


def test_per_call_diffusion_overrides():
    torch.manual_seed(0)
    model = _train_like(PoseModel(small_cfg(hypotheses=3, diffusion_steps=2))).eval()
    with torch.inference_mode():
        feats = model.encode_frames(_frames(1).flatten(0, 1)).unflatten(0, (1, 5))
        default = model.decode_windows(feats, generator=_gen(2))
        explicit = model.decode_windows(feats, generator=_gen(2), diffusion_steps=2, hypotheses=3)
        other = model.decode_windows(feats, generator=_gen(2), diffusion_steps=1, hypotheses=1)
        off = model.decode_windows(feats, diffusion_steps=0)
    assert torch.equal(default["heatmaps"], explicit["heatmaps"])
    assert (default["heatmaps"] - other["heatmaps"]).abs().max() > 1e-5
    model.cfg = model.cfg.replace(diffusion=False)
    with torch.inference_mode():
        assert torch.equal(off["heatmaps"], model.decode_windows(feats)["heatmaps"])
    with pytest.raises(ValueError, match="hypotheses >= 1"):
        model.decode_windows(feats, hypotheses=0)


def test_static_windows_encode_the_frame_once_with_identical_results():
    """COCO-style windows (one image repeated T times) run the backbone once per window."""
    cfg = get_preset("tiny-cpu", embed_dim=32, depth=1, num_heads=2, head_channels=16, temporal_dim=16,
                     diffusion=False)
    torch.manual_seed(0)
    m = PoseModel(cfg).eval()
    torch.nn.init.normal_(m.temporal_proj.weight, std=0.1)  # make the temporal path matter
    one = torch.randn(2, 1, 3, *cfg.input_size)
    frames = one.expand(2, cfg.window, 3, *cfg.input_size).contiguous()
    calls = []
    m.backbone.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    with torch.no_grad():
        fast = m(frames)["heatmaps"]
        assert calls == [2]
        slow = m.decode_windows(m.encode_frames(frames.flatten(0, 1)).unflatten(0, (2, cfg.window)))
    torch.testing.assert_close(fast, slow["heatmaps"], rtol=1e-5, atol=1e-6)
    calls.clear()
    moving = frames.clone()
    moving[:, 0] += 1.0
    with torch.no_grad():
        m(moving)
    assert calls == [2 * cfg.window]


def test_keypoint_spread_of_the_hypotheses():
    """K >= 2 hypotheses give a per-joint spread: their decoded keypoints' RMS distance from their mean."""
    torch.manual_seed(0)
    model = _train_like(PoseModel(small_cfg(hypotheses=4, diffusion_steps=2))).eval()
    with torch.inference_mode():
        feats = model.encode_frames(_frames(2).flatten(0, 1)).unflatten(0, (2, 5))
        out = model.decode_windows(feats, noise_seeds=[1, 2])
        spread = model.keypoint_spread(out)
        assert out["hypotheses"].shape == (2, 4, *out["heatmaps"].shape[1:])
        torch.testing.assert_close(out["hypotheses"].mean(1), out["heatmaps"])
        each = [model.decode_heatmaps(out["hypotheses"][:, i])[..., :2] for i in range(4)]
        assert spread.shape == (2, model.cfg.num_keypoints) and (spread >= 0).all() and spread.max() > 0
        assert model.keypoint_spread(model.decode_windows(feats, hypotheses=1)) is None
        assert model.keypoint_spread(model.decode_windows(feats, diffusion_steps=0, hypotheses=4)) is None
    # the ViT head decodes by heatmap peak alone, so the spread is that of the per-hypothesis peaks
    stacked = torch.stack(each, 1)
    want = ((stacked - stacked.mean(1, keepdim=True)) ** 2).sum(-1).mean(1).sqrt()
    torch.testing.assert_close(spread, want, rtol=1e-4, atol=1e-4)


def test_gated_fusion_starts_as_the_single_frame_model_and_can_borrow_a_neighbour():
    torch.manual_seed(0)
    model = PoseModel(small_cfg(temporal_fusion="gated", diffusion=False)).eval()
    frames = _frames(2)
    with torch.no_grad():
        out = model(frames)
        assert torch.equal(out["heatmaps"], out["base_heatmaps"])  # zero-init gates: nothing borrowed
        feats = model.encode_frames(frames.flatten(0, 1)).unflatten(0, (2, 5))
        # a gate of 1 on frame 0 everywhere: the fused features become frame 0's (heatmaps = its base)
        model.temporal_gate.bias.copy_(torch.tensor([1.0, 0, 0, 0, 0]))
        borrowed = model.decode_windows(feats)["heatmaps"]
        first = feats.clone()
        first[:, model.cfg.key_index] = feats[:, 0]
        model.temporal_gate.bias.zero_()
        want = model.decode_windows(first)["base_heatmaps"]
        torch.testing.assert_close(borrowed, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="temporal_fusion"):
        PoseModel(small_cfg(temporal_fusion="concat"))


def test_optimizer_groups_honour_no_weight_decay():
    model = PoseModel(small_cfg())
    decay, no_decay = model.optimizer_groups(0.05)
    ids = {id(p) for p in no_decay["params"]}
    marked = [n for n, p in model.named_parameters() if getattr(p, "_no_weight_decay", False)]
    assert marked and all(id(dict(model.named_parameters())[n]) in ids for n in marked)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])


def test_single_frame_keep_score_mixes_per_joint():
    torch.manual_seed(0)
    model = _train_like(PoseModel(small_cfg(diffusion=False))).eval()
    with torch.no_grad():
        out = model(_frames(2))
        temporal = model.decode_keypoints(out)  # default 2.0: always the temporal keypoints
        single = model.decode_keypoints(out, base=True)
        assert not torch.equal(temporal, single)
        model.cfg = model.cfg.replace(single_frame_keep_score=0.0)  # every joint keeps its single-frame one
        assert torch.equal(model.decode_keypoints(out), single)
        tau = float(single[..., 2].median())
        model.cfg = model.cfg.replace(single_frame_keep_score=tau)
        mixed = model.decode_keypoints(out)
    keep = single[..., 2] >= tau
    assert keep.any() and (~keep).any()
    assert torch.equal(mixed[keep], single[keep]) and torch.equal(mixed[~keep], temporal[~keep])


def test_keypoint_spread_uses_the_movenet_heads_sub_cell_points():
    """With MoveNet's head the spread is that of hypothesis_points (cell + 3x3 centroid per hypothesis),
    not of decode() (cell + the offset field all hypotheses share)."""
    from model.backbones import entry

    cfg = get_preset("movenet-lightning", temporal=False, diffusion=True, hypotheses=3, diffusion_steps=1)
    model = _train_like(PoseModel(cfg)).eval()
    h, w = cfg.heatmap_size
    feats = torch.randn(2, cfg.window, entry(cfg).feature_channels(cfg), h, w, generator=_gen(3))
    with torch.inference_mode():
        out = model.decode_windows(feats, noise_seeds=[4, 5])
        spread = model.keypoint_spread(out)
        aux = {name: v.repeat_interleave(3, dim=0) for name, v in out["prediction"].items()}
        pts = model.keypoint_head.hypothesis_points(out["hypotheses"].flatten(0, 1), aux).view(2, 3, -1, 2)
    want = ((pts - pts.mean(1, keepdim=True)) ** 2).sum(-1).mean(1).sqrt()
    torch.testing.assert_close(spread, want)
    assert spread.shape == (2, cfg.num_keypoints) and (spread > 0).float().mean() > 0.5
