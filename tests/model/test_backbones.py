"""The backbone registry: every entry builds, runs, trains a step and round-trips through a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.backbones import BACKBONES, InputSpec, input_spec
from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import get_preset
from model.pose_model import PoseModel

SMALL = {
    "vit": dict(depth=1, embed_dim=32, num_heads=2, head_channels=16, input_size=(64, 48),
                heatmap_size=(16, 12)),
    "movenet": dict(backbone="movenet", width_mult=0.35, input_size=(64, 64), heatmap_size=(16, 16),
                    local_window=(2, 2)),
}


def small_cfg(name: str, **kw):
    return get_preset("tiny-cpu", **SMALL[name], temporal_dim=8, diffusion_dim=8, temporal_stride=16,
                      window=3, **kw)


def test_registry_covers_both_backbones():
    assert set(BACKBONES) >= {"vit", "movenet"}
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*movenet"):
        PoseModel(get_preset("tiny-cpu", backbone="nope"))
    with pytest.raises(ValueError, match="square"):
        PoseModel(get_preset("movenet-thunder", input_size=(256, 192), heatmap_size=(64, 48)))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_backbone_builds_runs_and_trains_a_step(name, tmp_path):
    torch.manual_seed(0)
    cfg = small_cfg(name)
    model = PoseModel(cfg)
    h, w = cfg.input_size
    frames = torch.randn(2, cfg.window, 3, h, w)
    out = model(frames)
    assert out["heatmaps"].shape == (2, 17, *cfg.heatmap_size)
    kps = model.decode_keypoints(out)
    assert kps.shape == (2, 17, 3) and torch.isfinite(kps).all()
    target = torch.rand(2, 17, *cfg.heatmap_size)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model.training_loss(frames, target, torch.ones(2, 17))["loss"]
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("backbone."))
    # checkpoint round trip, fp16 storage included
    path = save_checkpoint(model, tmp_path / "m.safetensors", storage_dtype=torch.float16)
    loaded, meta = load_checkpoint(path)
    assert meta["config"].backbone == cfg.backbone
    for k, v in model.state_dict().items():
        want = v.to(torch.float16).to(v.dtype) if v.is_floating_point() else v
        assert torch.equal(loaded.state_dict()[k], want), k


def test_single_frame_freeze_keeps_backbone_and_head_fixed():
    model = PoseModel(small_cfg("movenet", freeze_backbone="single-frame"))
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"temporal_encoder", "temporal_proj", "diffusion"}
    model.train()
    assert not model.backbone.training and not model.keypoint_head.training


def test_input_spec_normalises_per_backbone():
    crop = np.full((4, 4, 3), (255, 127, 0), dtype=np.uint8)
    mn = input_spec(get_preset("movenet-thunder")).normalize(crop)
    assert mn.shape == (3, 4, 4)
    np.testing.assert_allclose(mn[:, 0, 0], [1.0, -0.5 / 127.5, -1.0], atol=1e-6)
    vit = input_spec(get_preset("tiny-cpu")).normalize(crop)
    np.testing.assert_allclose(vit[:, 0, 0], [(1 - 0.485) / 0.229, (127 / 255 - 0.456) / 0.224,
                                              (0 - 0.406) / 0.225], rtol=1e-5)
    bgr = InputSpec((4, 4), (0, 0, 0), (1, 1, 1), channel_order="BGR").normalize(crop)
    assert bgr[:, 0, 0].tolist() == [0.0, 127.0, 255.0]
