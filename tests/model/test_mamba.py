"""Mamba v1 block: shapes, mamba-ssm init, equivalence with a plain mamba_simple-style forward, causality."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model.mamba import Mamba, SelectiveSSM
from model.ssm import selective_scan_ref


def naive_forward(m: Mamba, hidden: torch.Tensor) -> torch.Tensor:
    """mamba_simple.Mamba's slow path written out: (B, L, D) layout, F.conv1d, sequential scan."""
    L = hidden.shape[1]
    xz = (hidden @ m.in_proj.weight.t()).transpose(1, 2)  # (B, 2*d_inner, L)
    x, z = xz.chunk(2, dim=1)
    x = F.silu(F.conv1d(x, m.conv1d.weight, m.conv1d.bias, padding=m.d_conv - 1, groups=m.d_inner)[..., :L])
    x_dbl = x.transpose(1, 2) @ m.x_proj.weight.t()  # (B, L, R + 2N)
    dt, B, C = x_dbl.split([m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = (dt @ m.dt_proj.weight.t()).transpose(1, 2)
    y = selective_scan_ref(x, dt, -torch.exp(m.A_log), B.transpose(1, 2), C.transpose(1, 2), m.D, z=z,
                           delta_bias=m.dt_proj.bias, delta_softplus=True)
    return y.transpose(1, 2) @ m.out_proj.weight.t()


def test_shapes_and_sizes():
    m = Mamba(48, d_state=8, d_conv=3, expand=2)
    assert (m.d_inner, m.dt_rank) == (96, 3)  # dt_rank "auto" = ceil(48 / 16)
    assert m(torch.randn(2, 11, 48)).shape == (2, 11, 48)
    assert m(torch.randn(1, 1, 48)).shape == (1, 1, 48)  # shorter than the conv kernel
    assert Mamba(40, dt_rank=5).dt_rank == 5


def test_parameters_and_init_follow_mamba_ssm():
    torch.manual_seed(0)
    m = Mamba(64, d_state=16)
    names = {n for n, _ in m.named_parameters()}
    assert names == {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
                     "dt_proj.bias", "A_log", "D", "out_proj.weight"}
    assert m.in_proj.weight.shape == (256, 64) and m.x_proj.weight.shape == (4 + 32, 128)
    assert m.conv1d.weight.shape == (128, 1, 4)
    assert torch.equal(m.A_log, torch.log(torch.arange(1, 17.0)).repeat(128, 1))
    assert torch.equal(m.D, torch.ones(128))
    dt = F.softplus(m.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert math.log(dt.max() / dt.min()) > 2  # log-uniform over [1e-3, 1e-1], not a constant
    assert m.dt_proj.weight.abs().max() <= 4**-0.5
    assert m.A_log._no_weight_decay and m.D._no_weight_decay


def test_causal_conv_matches_conv1d():
    ssm = SelectiveSSM(12, d_state=4, d_conv=4, dt_rank=2)
    x = torch.randn(9, 3, 12)  # (L, batch, d_inner)
    ref = F.conv1d(x.permute(1, 2, 0), ssm.conv1d.weight, ssm.conv1d.bias, padding=3, groups=12)[..., :9]
    torch.testing.assert_close(ssm.causal_conv(x), ref.permute(2, 0, 1), rtol=1e-5, atol=1e-6)


def test_forward_matches_mamba_simple_reference():
    torch.manual_seed(1)
    m = Mamba(32, d_state=8)
    with torch.no_grad():  # make the SSM matter: non-trivial D and conv
        m.D.normal_()
    hidden = torch.randn(3, 40, 32)
    torch.testing.assert_close(m(hidden), naive_forward(m, hidden), rtol=1e-4, atol=1e-5)


def test_time_major_path_equals_batch_first():
    m = Mamba(16, d_state=4)
    hidden = torch.randn(2, 13, 16)
    torch.testing.assert_close(m.forward_time_major(hidden.transpose(0, 1).contiguous()).transpose(0, 1),
                               m(hidden), rtol=1e-5, atol=1e-6)


def test_causality():
    torch.manual_seed(2)
    m = Mamba(16, d_state=4)
    x = torch.randn(2, 30, 16)
    t = 17
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn(2, 30 - t - 1, 16) * 3
    y, y2 = m(x), m(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1], rtol=0, atol=1e-6)
    assert (y[:, t + 1:] - y2[:, t + 1:]).abs().max() > 1e-3  # the future does change later outputs
    # and the past reaches forward: a change at position 0 moves the last output
    x3 = x.clone()
    x3[:, 0] += 1
    assert (m(x3)[:, -1] - y[:, -1]).abs().max() > 1e-6


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(3)
    m = Mamba(16, d_state=4)
    m(torch.randn(2, 21, 16)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
