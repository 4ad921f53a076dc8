"""GLS temporal encoder: scan-order helpers, which tokens each order mixes, shapes per stride, grads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.config import get_preset
from model.temporal import (
    GlobalBlock,
    LocalBlock,
    MultiScanBlock,
    TemporalEncoder,
    spatial_grid,
    spatial_seq,
    temporal_grid,
    temporal_seq,
    tube_grid,
    tube_seq,
    unified_grid,
    unified_seq,
)

T, H, W, B, C = 3, 5, 7, 2, 4


def grid():
    return torch.randn(T, H, W, B, C)


# --------------------------------------------------------------------------- order helpers
@pytest.mark.parametrize("to_seq,to_grid", [(unified_seq, unified_grid), (spatial_seq, spatial_grid),
                                            (temporal_seq, temporal_grid)])
def test_orders_invert(to_seq, to_grid):
    x = grid()
    assert torch.equal(to_grid(to_seq(x), T, H, W), x)


@pytest.mark.parametrize("window", [(2, 3), (5, 7), (3, 4), (1, 1)])
def test_tubes_invert_with_padding(window):
    x = grid()
    s = tube_seq(x, window)
    wh, ww = window
    nH, nW = -(-H // wh), -(-W // ww)
    assert s.shape == (T * wh * ww, nH * nW * B, C)
    assert torch.equal(tube_grid(s, T, H, W, window), x)


def test_order_positions():
    x = grid()
    t, h, w, b = 2, 3, 5, 1
    token = x[t, h, w, b]
    assert torch.equal(unified_seq(x)[t * H * W + h * W + w, b], token)
    assert torch.equal(spatial_seq(x)[h * W + w, t * B + b], token)
    assert torch.equal(temporal_seq(x)[t, (h * W + w) * B + b], token)
    wh, ww = 2, 3
    i, r, j, c = h // wh, h % wh, w // ww, w % ww
    nW = -(-W // ww)
    assert torch.equal(tube_seq(x, (wh, ww))[t * wh * ww + r * ww + c, (i * nW + j) * B + b], token)


def test_tube_padding_is_zero():
    x = grid()
    s = tube_seq(x, (2, 3))  # H=5 -> 6, W=7 -> 9: last row / columns of tubes are padding
    padded = tube_grid(s, T, 6, 9, (2, 3))
    assert torch.equal(padded[:, :H, :W], x)
    assert padded[:, H:].abs().sum() == 0 and padded[:, :, W:].abs().sum() == 0


# --------------------------------------------------------------------------- which tokens mix
def influence(block: torch.nn.Module, t: int, h: int, w: int, b: int) -> torch.Tensor:
    """Bool (T, H, W, B): outputs that move when token (t, h, w, b) of the input changes."""
    torch.manual_seed(0)
    x = grid().repeat(1, 1, 1, 1, 8)  # C = 32 channels
    x2 = x.clone()
    x2[t, h, w, b] += torch.randn(x.shape[-1])
    with torch.no_grad():
        diff = (block(x2) - block(x)).abs().amax(-1)
    return diff > 1e-6


def slow_decay(block: torch.nn.Module) -> torch.nn.Module:
    """Long memory (decay exp(-0.001) per step, dt = 0.1) so reachable tokens move well above fp32 noise."""
    with torch.no_grad():
        for m in block.modules():
            if hasattr(m, "A_log"):
                m.A_log.fill_(torch.log(torch.tensor(0.01)))
                m.dt_proj.bias.fill_(torch.log(torch.expm1(torch.tensor(0.1))))  # softplus^-1(0.1)
    return block.eval()


def block_with(kinds, window=None):
    torch.manual_seed(1)
    return slow_decay(MultiScanBlock(32, kinds, d_state=4, d_conv=3, expand=2, window=window))


def test_temporal_scan_only_mixes_the_same_pixel():
    moved = influence(block_with(("temporal",)), 1, 2, 3, 1)
    expected = torch.zeros(T, H, W, B, dtype=torch.bool)
    expected[:, 2, 3, 1] = True  # every frame of that pixel (forward + backward), nothing else
    assert torch.equal(moved, expected)


def test_spatial_scan_only_mixes_the_same_frame():
    moved = influence(block_with(("spatial",)), 1, 2, 3, 0)
    expected = torch.zeros(T, H, W, B, dtype=torch.bool)
    expected[1, :, :, 0] = True
    assert torch.equal(moved, expected)


def test_unified_scan_mixes_the_whole_sample_only():
    moved = influence(block_with(("unified",)), 1, 2, 3, 0)
    assert moved[:, :, :, 0].all() and not moved[:, :, :, 1].any()


def test_tube_scan_only_mixes_its_window():
    moved = influence(block_with(("tube",), window=(2, 3)), 1, 2, 4, 1)
    expected = torch.zeros(T, H, W, B, dtype=torch.bool)
    expected[:, 2:4, 3:6, 1] = True  # window rows 2-3, cols 3-5, all frames
    assert torch.equal(moved, expected)


def test_global_block_reaches_across_frames_and_pixels():
    torch.manual_seed(2)
    blk = slow_decay(GlobalBlock(32, d_state=4, d_conv=3))
    moved = influence(blk, 0, 0, 0, 0)
    assert moved[:, :, :, 0].all() and not moved[:, :, :, 1].any()
    assert blk.gate_logits.shape == (6, 64)


@pytest.mark.parametrize("kinds,window", [(("unified",), None), (("spatial",), None), (("temporal",), None),
                                          (("tube",), (2, 3)), (GlobalBlock.KINDS, None)])
def test_single_frame_output_is_that_frame_of_the_full_output(kinds, window):
    blk = block_with(kinds, window)
    x = grid().repeat(1, 1, 1, 1, 8)
    with torch.no_grad():
        full = blk(x)
        for t in range(T):
            torch.testing.assert_close(blk(x, frame=t), full[t:t + 1], rtol=1e-5, atol=1e-6)


def test_backward_direction_is_used():
    # a forward-only causal scan could not carry a change at the last token back to the first
    moved = influence(block_with(("unified",)), T - 1, H - 1, W - 1, 0)
    assert moved[0, 0, 0, 0]


# --------------------------------------------------------------------------- encoder
def small_cfg(stride, **kw):
    return get_preset("tiny-cpu", input_size=(64, 48), heatmap_size=(16, 12), temporal_stride=stride,
                      temporal_dim=32, d_state=4, local_window=(4, 3), **kw)


@pytest.mark.parametrize("stride,grid_hw", [(4, (16, 12)), (8, (8, 6)), (16, (4, 3))])
def test_encoder_shapes(stride, grid_hw):
    cfg = small_cfg(stride)
    assert cfg.temporal_grid == grid_hw
    enc = TemporalEncoder(cfg, in_channels=24)
    feats = torch.randn(2, cfg.window, 24, *cfg.patch_grid)  # backbone grid 4 x 3
    out = enc(feats)
    assert out.shape == (2, 32, *grid_hw)
    assert torch.isfinite(out).all()


def test_default_grid_at_stride_16_is_the_backbone_grid():
    cfg = get_preset("tiny-cpu", temporal_stride=16, temporal_dim=16, d_state=4)
    assert cfg.temporal_grid == cfg.patch_grid == (16, 12)
    enc = TemporalEncoder(cfg, in_channels=8)
    assert enc(torch.randn(1, cfg.window, 8, 16, 12)).shape == (1, 16, 16, 12)


def test_without_blocks_it_is_the_projected_key_frame():
    cfg = small_cfg(8, global_blocks=0, local_blocks=0)
    enc = TemporalEncoder(cfg, in_channels=24)
    feats = torch.randn(2, cfg.window, 24, 4, 3)
    k = cfg.key_index
    x = F.interpolate(feats[:, k], size=cfg.temporal_grid, mode="bilinear", align_corners=False)
    # resize, then project (the encoder does it the other way round: they commute)
    x = F.conv2d(x, enc.proj.weight[:, :, None, None], enc.proj.bias).permute(0, 2, 3, 1)
    x = enc.proj_norm(x) + enc.frame_pos[k] + enc.pixel_pos
    torch.testing.assert_close(enc(feats), enc.norm(x).permute(0, 3, 1, 2), rtol=1e-4, atol=1e-5)


def test_output_depends_on_every_frame_and_only_its_own_sample():
    cfg = small_cfg(8)
    torch.manual_seed(3)
    enc = TemporalEncoder(cfg, in_channels=24).eval()
    feats = torch.randn(2, cfg.window, 24, 4, 3)
    with torch.no_grad():
        base = enc(feats)
        for t in range(cfg.window):
            f2 = feats.clone()
            f2[0, t] += 1
            out = enc(f2)
            assert (out[0] - base[0]).abs().max() > 1e-5, f"frame {t} does not reach the key frame"
            torch.testing.assert_close(out[1], base[1], rtol=0, atol=0)


def test_every_parameter_gets_a_gradient():
    cfg = small_cfg(8)
    torch.manual_seed(4)
    enc = TemporalEncoder(cfg, in_channels=24)
    feats = torch.randn(2, cfg.window, 24, 4, 3, requires_grad=True)
    enc(feats).mul(torch.randn(2, 32, 8, 6)).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert feats.grad.abs().sum() > 0


def test_gradients_match_finite_differences():
    # the block merges orders with in-place adds into views: check the chain rule for every tensor
    torch.manual_seed(5)
    blk = slow_decay(GlobalBlock(8, d_state=4, d_conv=3)).double()
    with torch.no_grad():  # random gates and D so every path carries weight
        blk.gate_logits.normal_(0, 0.5)
        for ssm in blk.ssm.values():
            ssm.D.normal_(0, 0.5)
    x = torch.randn(2, 3, 2, 2, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 2, 2, 8, dtype=torch.float64)
    (blk(x) * w).sum().backward()
    eps = 1e-3
    for name, p in [("x", x), *blk.named_parameters()]:
        d = torch.randn_like(p)
        with torch.no_grad():
            p.add_(eps * d)
            plus = (blk(x) * w).sum()
            p.sub_(2 * eps * d)
            minus = (blk(x) * w).sum()
            p.add_(eps * d)
        numeric, analytic = float(plus - minus) / (2 * eps), float((p.grad * d).sum())
        # the scan runs in fp32 inside: agreement to ~1e-4 relative, not float64 precision
        assert abs(analytic - numeric) <= 2e-2 * abs(numeric) + 5e-5, (name, analytic, numeric)


def test_bad_input_shape_is_a_clear_error():
    cfg = small_cfg(8)
    enc = TemporalEncoder(cfg, in_channels=24)
    with pytest.raises(ValueError, match="expects"):
        enc(torch.randn(2, cfg.window + 1, 24, 4, 3))
    with pytest.raises(ValueError, match="expects"):
        enc(torch.randn(2, cfg.window, 16, 4, 3))


def test_local_block_window_from_config():
    cfg = small_cfg(8)
    enc = TemporalEncoder(cfg, in_channels=24)
    assert len(enc.global_blocks) == cfg.global_blocks and len(enc.local_blocks) == cfg.local_blocks
    assert isinstance(enc.local_blocks[0], LocalBlock) and enc.local_blocks[0].window == (4, 3)
