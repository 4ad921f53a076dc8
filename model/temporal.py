"""GLS-Mamba-style temporal encoder: backbone tokens of T frames -> key-frame spatio-temporal features.

    feats (B, T, C_in, gh, gw) -> 1x1 projection + LayerNorm -> bilinear resize to cfg.temporal_grid
    -> + frame-position and pixel-position embeddings
    -> cfg.global_blocks x GlobalBlock: six scans of the T x H x W grid (unified T*H*W sequence,
       per-frame H*W sequences, per-pixel T sequences; each forward and backward), gated merge
    -> cfg.local_blocks x LocalBlock: scans over windowed tubes (wh x ww x all T), forward and backward
    -> LayerNorm of the key frame (cfg.key_index) -> (B, cfg.temporal_dim, th, tw)

Inside the encoder the token grid is kept as (T, H, W, B, C): then the unified and per-pixel
temporal orders are free reshapes into the time-major (L, n, C) layout the scan wants, and only the
spatial and tube orders cost a transpose. The output is *not* zero-initialised here; PoseModel adds
it to the key frame's head features through its own zero-initialised projection.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.config import PoseModelConfig
from model.mamba import SelectiveSSM, resolve_dt_rank

# --------------------------------------------------------------------------- scan orders
# A grid is (T, H, W, B, C). A sequence batch is time-major (L, n, C): n independent sequences
# of length L, ready for SelectiveSSM. Each order is a pair of inverse maps grid <-> sequences.


def unified_seq(x: torch.Tensor) -> torch.Tensor:
    """One sequence per sample over all T*H*W tokens (frame by frame, raster inside a frame)."""
    T, H, W, B, C = x.shape
    return x.reshape(T * H * W, B, C)


def unified_grid(s: torch.Tensor, T: int, H: int, W: int) -> torch.Tensor:
    return s.reshape(T, H, W, -1, s.shape[-1])


def spatial_seq(x: torch.Tensor) -> torch.Tensor:
    """One sequence per (frame, sample) over its H*W tokens in raster order; batch index t*B + b."""
    T, H, W, B, C = x.shape
    return x.reshape(T, H * W, B, C).transpose(0, 1).reshape(H * W, T * B, C)


def spatial_grid(s: torch.Tensor, T: int, H: int, W: int) -> torch.Tensor:
    C = s.shape[-1]
    return s.reshape(H * W, T, -1, C).transpose(0, 1).reshape(T, H, W, -1, C)


def temporal_seq(x: torch.Tensor) -> torch.Tensor:
    """One sequence per (pixel, sample) over its T frames; batch index (h*W + w)*B + b."""
    T, H, W, B, C = x.shape
    return x.reshape(T, H * W * B, C)


def temporal_grid(s: torch.Tensor, T: int, H: int, W: int) -> torch.Tensor:
    return s.reshape(T, H, W, -1, s.shape[-1])


def tube_seq(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """One sequence per (wh x ww window, sample) over its T*wh*ww tokens (frame by frame, raster).

    The grid is zero-padded at the bottom/right to whole windows; batch index (i*nW + j)*B + b.
    """
    T, H, W, B, C = x.shape
    wh, ww = window
    ph, pw = -H % wh, -W % ww
    if ph or pw:
        x = F.pad(x, (0, 0, 0, 0, 0, pw, 0, ph))
    nH, nW = (H + ph) // wh, (W + pw) // ww
    x = x.reshape(T, nH, wh, nW, ww, B, C).permute(0, 2, 4, 1, 3, 5, 6)
    return x.reshape(T * wh * ww, nH * nW * B, C)


def tube_grid(s: torch.Tensor, T: int, H: int, W: int, window: tuple[int, int]) -> torch.Tensor:
    wh, ww = window
    nH, nW = -(-H // wh), -(-W // ww)
    C = s.shape[-1]
    x = s.reshape(T, wh, ww, nH, nW, -1, C).permute(0, 3, 1, 4, 2, 5, 6)
    return x.reshape(T, nH * wh, nW * ww, -1, C)[:, :H, :W]


# --------------------------------------------------------------------------- blocks
class MultiScanBlock(nn.Module):
    """Pre-norm residual Mamba block whose selective scans run over several orders of the grid.

    Mamba's per-token parts are shared by all orders and computed once per token: in_proj (x, z),
    the SiLU(z) gate and out_proj. Each order kind has its own conv1d / x_proj / dt_proj / A / D
    (a SelectiveSSM); its forward and backward scans share those weights (tied bidirectional
    Mamba, as in Caduceus' BiMamba) so both directions run as one batch of 2n sequences.
    Merge: sum_k softmax(gate_logits)[k] * y_k over the 2*len(kinds) scans, per channel, then
    * SiLU(z) and out_proj; with shared z that equals gating six separate Mamba outputs. Why
    per-channel softmax gates: a channel can specialise (motion from the temporal scans, layout
    from the spatial ones) at a cost of 2k*d_inner parameters; the softmax keeps the merge a convex
    combination, so the output scale does not grow with the number of orders, and zero-init logits
    start as a plain average. Token-dependent selection already happens inside each scan (dt, B, C
    are input-dependent), so per-token gate logits would add a projection for little gain.
    """

    def __init__(self, dim: int, kinds: tuple[str, ...], d_state: int, d_conv: int, expand: int,
                 window: tuple[int, int] | None = None):
        super().__init__()
        self.kinds, self.window = kinds, window
        self.d_inner = d_inner = int(expand * dim)
        self.norm = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        dt_rank = resolve_dt_rank(dim, "auto")
        self.ssm = nn.ModuleDict({k: SelectiveSSM(d_inner, d_state, d_conv, dt_rank) for k in kinds})
        self.gate_logits = nn.Parameter(torch.zeros(2 * len(kinds), d_inner))
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def to_seq(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        if kind == "tube":
            return tube_seq(x, self.window)
        return {"unified": unified_seq, "spatial": spatial_seq, "temporal": temporal_seq}[kind](x)

    def to_grid(self, kind: str, s: torch.Tensor, T: int, H: int, W: int) -> torch.Tensor:
        if kind == "tube":
            return tube_grid(s, T, H, W, self.window)
        return {"unified": unified_grid, "spatial": spatial_grid, "temporal": temporal_grid}[kind](s, T, H, W)

    def frame_tokens(self, kind: str, frame: int, T: int, H: int, W: int, B: int) -> tuple[slice, slice]:
        """(rows, columns) of one frame's tokens in this kind's sequences: a T=1 sequence batch."""
        if kind == "unified":
            return slice(frame * H * W, (frame + 1) * H * W), slice(None)
        if kind == "spatial":
            return slice(None), slice(frame * B, (frame + 1) * B)
        if kind == "temporal":
            return slice(frame, frame + 1), slice(None)
        wh, ww = self.window
        return slice(frame * wh * ww, (frame + 1) * wh * ww), slice(None)

    def forward(self, x: torch.Tensor, frame: int | None = None) -> torch.Tensor:
        """x: grid (T, H, W, B, dim) -> same shape, or only frame `frame`'s tokens (1, H, W, B, dim).

        All T frames are scanned either way; `frame` skips merging, gating and out_proj elsewhere
        (the encoder's last block only needs the key frame).
        """
        T, H, W, B = x.shape[:4]
        h = self.norm(x)
        u = F.linear(h, self.in_proj.weight[: self.d_inner])
        z = F.linear(h if frame is None else h[frame:frame + 1], self.in_proj.weight[self.d_inner:])
        gates = self.gate_logits.softmax(dim=0)
        y = None
        for k, kind in enumerate(self.kinds):
            seq = self.to_seq(kind, u)
            L, n = seq.shape[:2]
            out = self.ssm[kind](torch.cat([seq, seq.flip(0)], dim=1))  # forward | backward scans
            if frame is None:
                rows, cols, Tm = slice(None), slice(None), T
            else:
                (rows, cols), Tm = self.frame_tokens(kind, frame, T, H, W, B), 1
            r0, r1, _ = rows.indices(L)
            fwd = out[rows, :n][:, cols]
            bwd = out[L - r1:L - r0, n:][:, cols].flip(0)  # the backward scan ran on the flipped sequence
            merged = torch.addcmul(fwd * gates[2 * k], bwd, gates[2 * k + 1])
            part = self.to_grid(kind, merged, Tm, H, W)
            y = part if y is None else y.add_(part)
        x = x if frame is None else x[frame:frame + 1]
        return x + self.out_proj(y * F.silu(z))


class GlobalBlock(MultiScanBlock):
    """Six-order global scan: unified T*H*W, per-frame spatial H*W, per-pixel temporal T; fwd + bwd."""

    KINDS = ("unified", "spatial", "temporal")

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2):
        super().__init__(dim, self.KINDS, d_state, d_conv, expand)


class LocalBlock(MultiScanBlock):
    """Local refinement: scans over windowed tubes (wh x ww x all T frames), forward + backward."""

    def __init__(self, dim: int, window: tuple[int, int], d_state: int = 16, d_conv: int = 4,
                 expand: int = 2):
        super().__init__(dim, ("tube",), d_state, d_conv, expand, window=tuple(window))


# --------------------------------------------------------------------------- encoder
class TemporalEncoder(nn.Module):
    """feats (B, T, C_in, gh, gw) of all T frames -> (B, cfg.temporal_dim, th, tw) key-frame features."""

    def __init__(self, cfg: PoseModelConfig, in_channels: int):
        super().__init__()
        d = cfg.temporal_dim
        self.window, self.key_index, self.grid = cfg.window, cfg.key_index, tuple(cfg.temporal_grid)
        self.in_channels, self.dim = in_channels, d
        self.proj = nn.Linear(in_channels, d)  # the 1x1 projection, applied per token
        self.proj_norm = nn.LayerNorm(d)
        th, tw = self.grid
        self.frame_pos = nn.Parameter(torch.zeros(cfg.window, d))
        self.pixel_pos = nn.Parameter(torch.zeros(th, tw, d))
        nn.init.trunc_normal_(self.frame_pos, std=0.02)
        nn.init.trunc_normal_(self.pixel_pos, std=0.02)
        blk = dict(d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand)
        self.global_blocks = nn.ModuleList(GlobalBlock(d, **blk) for _ in range(cfg.global_blocks))
        self.local_blocks = nn.ModuleList(
            LocalBlock(d, cfg.local_window, **blk) for _ in range(cfg.local_blocks))
        self.norm = nn.LayerNorm(d)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 5 or feats.shape[1] != self.window or feats.shape[2] != self.in_channels:
            raise ValueError(f"TemporalEncoder expects (B, T={self.window}, C={self.in_channels}, gh, gw); "
                             f"got {tuple(feats.shape)}")
        B, T, C, gh, gw = feats.shape
        th, tw = self.grid
        # Project first, then resize: both are linear and they commute (bilinear weights sum to 1),
        # so this equals resize-then-project at a fraction of the cost when upsampling.
        x = F.conv2d(feats.flatten(0, 1), self.proj.weight[:, :, None, None], self.proj.bias)
        if (gh, gw) != (th, tw):
            x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
        x = x.reshape(B, T, self.dim, th, tw).permute(1, 3, 4, 0, 2)  # grid (T, H, W, B, d)
        x = self.proj_norm(x) + self.frame_pos[:, None, None, None] + self.pixel_pos[None, :, :, None]
        blocks = [*self.global_blocks, *self.local_blocks]
        for i, block in enumerate(blocks):
            # the last block computes only the key frame's outputs (its scans still see all frames)
            x = block(x, frame=self.key_index if i == len(blocks) - 1 else None)
        if not blocks:
            x = x[self.key_index:self.key_index + 1]
        key = self.norm(x[0])  # (H, W, B, d)
        return key.permute(2, 3, 0, 1).contiguous()
