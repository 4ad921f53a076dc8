"""Mamba v1 block (as mamba-ssm's `mamba_simple.Mamba`), CPU-friendly.

    in_proj -> (x, z);  x -> causal depthwise conv1d -> SiLU -> x_proj -> (dt, B, C);
    dt_proj(dt) + softplus -> selective scan with A = -exp(A_log), D -> * SiLU(z) -> out_proj

Parameter names and initialisation follow mamba-ssm (in_proj, conv1d, x_proj, dt_proj, A_log, D,
out_proj). Internally sequences are time-major, (L, batch, channels): the selective scan and the
shifted-sum convolution then need no transposes (see model/ssm.py). `SelectiveSSM` is the part
between in_proj and out_proj, reused by the temporal encoder's multi-order scans.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.ssm import LOG2E, selective_scan


def resolve_dt_rank(d_model: int, dt_rank: int | str) -> int:
    return math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)


class SelectiveSSM(nn.Module):
    """conv1d -> SiLU -> x_proj/dt_proj -> selective scan (+ D u) [* SiLU(z)] on (L, batch, d_inner)."""

    def __init__(self, d_inner: int, d_state: int = 16, d_conv: int = 4, dt_rank: int = 8,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dt_init_floor: float = 1e-4,
                 conv_bias: bool = True):
        super().__init__()
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = d_inner, d_state, d_conv, dt_rank
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        # mamba-ssm's init: dt_proj weight ~ U(+-dt_rank^-0.5); its bias = softplus^-1(dt) with dt
        # log-uniform in [dt_min, dt_max], so the initial step sizes span slow and fast dynamics.
        std = dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.dt_proj.bias._no_reinit = True
        # S4D-real init: A_n = -n for every channel.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True

    def causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise causal conv over time of x (L, batch, d_inner): conv1d(padding=K-1)[:L].

        A sum of K shifted products in the time-major layout: no transposes or padding copies.
        """
        K, L = self.d_conv, x.shape[0]
        w = self.conv1d.weight[:, 0, :]  # (d_inner, K): tap k multiplies x_{t-K+1+k}
        bias = self.conv1d.bias
        out = x * w[:, K - 1] if bias is None else torch.addcmul(bias, x, w[:, K - 1])
        for k in range(K - 1):
            shift = K - 1 - k
            if shift < L:
                out[shift:].addcmul_(x[:-shift], w[:, k])
        return out

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """x, z: (L, batch, d_inner) -> (L, batch, d_inner); z gates the output by SiLU(z) when given."""
        x = F.silu(self.causal_conv(x))
        x_dbl = self.x_proj(x)  # (L, batch, dt_rank + 2N)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # bias goes in as delta_bias (fused, like mamba-ssm)
        # exp2, not exp: ATen's float exp goes through a threaded VML kernel that, even for this tiny
        # tensor, can stall ~10 ms per call on a busy 2-core box; exp2 runs inline.
        A = -torch.exp2(self.A_log.float() * LOG2E)
        bcl = lambda t: t.permute(1, 2, 0)  # (L, batch, c) -> (batch, c, L) view, no copy
        y = selective_scan(
            bcl(x), bcl(dt), A, bcl(B.contiguous()), bcl(C.contiguous()), self.D.float(),
            z=None if z is None else bcl(z), delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        return y.permute(2, 0, 1)  # back to (L, batch, d_inner); a view for the pure-torch scan


class Mamba(SelectiveSSM):
    """Mamba v1 block: (batch, L, d_model) -> (batch, L, d_model). No norm or residual (the caller's)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", bias: bool = False, **ssm_kwargs):
        d_inner = int(expand * d_model)
        super().__init__(d_inner, d_state, d_conv, resolve_dt_rank(d_model, dt_rank), **ssm_kwargs)
        self.d_model, self.expand = d_model, expand
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def forward_time_major(self, hidden: torch.Tensor) -> torch.Tensor:
        """(L, batch, d_model) -> (L, batch, d_model): the layout the scans want, no transposes."""
        w = self.in_proj.weight
        b = self.in_proj.bias
        x = F.linear(hidden, w[: self.d_inner], None if b is None else b[: self.d_inner])
        z = F.linear(hidden, w[self.d_inner:], None if b is None else b[self.d_inner:])
        return self.out_proj(super().forward(x, z))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.forward_time_major(hidden.transpose(0, 1)).transpose(0, 1)
