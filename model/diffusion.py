"""Heatmap diffusion head (DiffPose / DiffusionPose style).

Training: key-frame GT heatmaps, mapped from [0, 1] to [-s, s] (signal scale s),
are noised at a random step of a cosine schedule; the decoder predicts the clean
heatmaps x0. Inference: DDIM (eta = 0) with S steps from Gaussian noise (or from
a given heatmap noised to some step), K hypotheses run as one batch, averaged.

Decoder. The noisy heatmap through a sigmoid is an *attention mask* per joint:
it pools ("looks up") joint features from the conditioning features at three
scales (1/16 backbone tokens, 1/8 first-deconv features, 1/4 fused features).
The pooled vectors, with a learned joint embedding and the step embedding,
become one query per joint; its dot product with the 1/4 features (to which the
step embedding is concatenated) gives a heatmap correction. The prediction is
    x0 = prior + correction
where `prior` is the deterministic heatmap of the same features (the simple
head's output). The correction's last layer is zero-initialised, so an untrained
head returns the prior exactly: switching diffusion on never changes what a
loaded single-frame (e.g. ViTPose) model predicts until the head is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.config import PoseModelConfig


@dataclass
class DiffusionCond:
    """What the decoder is conditioned on (all for the key frame)."""

    f16: torch.Tensor  # (B, C16, h/4, w/4) backbone tokens
    f8: torch.Tensor  # (B, C8, h/2, w/2) first deconv block output
    f4: torch.Tensor  # (B, C4, h, w) fused (temporal) features
    prior: torch.Tensor  # (B, K, h, w) deterministic heatmaps from f4


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """alpha_bar(t) for t = 0..T-1 of the cosine schedule (Nichol & Dhariwal), betas clipped at 0.999."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    f = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    ab = f / f[0]
    betas = (1 - ab[1:] / ab[:-1]).clamp(0, 0.999)
    return torch.cumprod(1 - betas, dim=0).float()


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Heatmap MSE with per-joint target weights: pred/target (B, K, h, w), weight (B, K) or (B, K, 1)."""
    w = weight.reshape(weight.shape[0], weight.shape[1], 1, 1).to(pred.dtype)
    return (w * (pred - target) ** 2).mean()


class HeatmapDiffusion(nn.Module):
    def __init__(self, cfg: PoseModelConfig, c16: int, c8: int, c4: int):
        super().__init__()
        d = cfg.diffusion_dim
        k = cfg.num_keypoints
        self.num_keypoints = k
        self.timesteps = cfg.train_timesteps
        self.scale = float(cfg.signal_scale)
        self.dim = d
        # Derived from the config, so not saved in checkpoints.
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(cfg.train_timesteps), persistent=False)

        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.proj16 = nn.Conv2d(c16, d, 1)
        self.proj8 = nn.Conv2d(c8, d, 1)
        self.proj4 = nn.Conv2d(c4, d, 1)
        # "concat(features, step embedding) -> 1x1 conv", computed as proj4(f) + time_to_map(temb).
        self.time_to_map = nn.Linear(d, d)
        self.joint_embed = nn.Parameter(torch.randn(k, d))
        self.query = nn.Sequential(
            nn.Linear(4 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.LayerNorm(d),
        )
        self.out = nn.Linear(d, d)  # query -> correction kernel; zero-init (see module docstring)
        self.out_bias = nn.Parameter(torch.zeros(k))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if cfg.diffusion_decoder not in ("lookup", "lookup+conv"):
            raise ValueError("diffusion_decoder must be 'lookup' or 'lookup+conv', "
                             f"got {cfg.diffusion_decoder!r}")
        self.local = None
        if cfg.diffusion_decoder == "lookup+conv":
            # The lookup decoder's output is a per-joint kernel dotted with the features: it cannot
            # place a peak where x_t has one, so its x0 ignores x_t and K hypotheses never differ
            # (docs/results.md). These convolutions see the noisy heatmap itself; last layer zero-init.
            self.local = nn.Sequential(nn.Conv2d(k + d, d, 3, padding=1), nn.GELU(),
                                       nn.Conv2d(d, k, 3, padding=1))
            nn.init.zeros_(self.local[2].weight)
            nn.init.zeros_(self.local[2].bias)

    # ------------------------------------------------------------------ scaling
    def to_signal(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return (heatmaps * 2.0 - 1.0) * self.scale

    def from_signal(self, x: torch.Tensor) -> torch.Tensor:
        return (x / self.scale + 1.0) * 0.5

    # ------------------------------------------------------------------ decoder
    def _features(self, cond: DiffusionCond) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step-independent projections, computed once per sample (shared by K hypotheses and S steps)."""
        return self.proj16(cond.f16), self.proj8(cond.f8), self.proj4(cond.f4)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, feats, prior: torch.Tensor) -> torch.Tensor:
        """x_t (B*R, K, h, w) signal scale, t (B*R,) -> x0 (B*R, K, h, w) in heatmap scale ([0, 1]-ish).

        `feats` and `prior` hold B samples; x_t holds R hypotheses per sample
        (sample-major), so each hypothesis reuses its sample's features.
        """
        rep = x_t.shape[0] // prior.shape[0]
        return prior.repeat_interleave(rep, dim=0) + self.correction(x_t, t, feats)

    def correction(self, x_t: torch.Tensor, t: torch.Tensor, feats) -> torch.Tensor:
        """The decoder proper: x0 - prior, (B*R, K, h, w)."""
        p16, p8, p4 = feats
        b = p4.shape[0]
        rep = x_t.shape[0] // b
        h, w = p4.shape[-2:]
        temb = self.time_mlp(timestep_embedding(t, self.dim).to(p4.dtype))  # (BR, d)

        mask4 = torch.sigmoid(x_t)  # the lookup mask at 1/4
        mask8 = F.adaptive_avg_pool2d(mask4, p8.shape[-2:])
        mask16 = F.adaptive_avg_pool2d(mask4, p16.shape[-2:])

        def lookup(mask: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
            # Mask-weighted average of the features per joint: (BR, K, hw) x (B, d, hw) -> (BR, K, d)
            m = mask.flatten(2)
            m = m / (m.sum(-1, keepdim=True) + 1e-6)
            m = m.view(b, rep, *m.shape[1:])
            return torch.einsum("brkn,bdn->brkd", m, feat.flatten(2)).flatten(0, 1)

        g4 = F.gelu(p4.unsqueeze(1) + self.time_to_map(temb).view(b, rep, -1, 1, 1))  # (B, R, d, h, w)
        q = torch.cat([
            lookup(mask4, p4), lookup(mask8, p8), lookup(mask16, p16),
            (self.joint_embed[None] + temb[:, None]).expand(-1, self.num_keypoints, -1),
        ], dim=-1)
        kernel = self.out(self.query(q))  # (BR, K, d)
        corr = torch.einsum("brkd,brdn->brkn", kernel.view(b, rep, self.num_keypoints, -1), g4.flatten(3))
        corr = corr.reshape(b * rep, self.num_keypoints, h, w) + self.out_bias.view(1, -1, 1, 1)
        if self.local is not None:
            corr = corr + self.local(torch.cat([x_t / self.scale, g4.flatten(0, 1)], dim=1))
        return corr

    # ------------------------------------------------------------------ training
    def training_loss(self, cond: DiffusionCond, gt_heatmaps: torch.Tensor, target_weight: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        b = gt_heatmaps.shape[0]
        dev = gt_heatmaps.device
        t = torch.randint(0, self.timesteps, (b,), device=dev, generator=generator)
        noise = torch.randn(gt_heatmaps.shape, device=dev, dtype=gt_heatmaps.dtype, generator=generator)
        ab = self.alphas_cumprod[t].view(b, 1, 1, 1).to(gt_heatmaps.dtype)
        x_t = ab.sqrt() * self.to_signal(gt_heatmaps) + (1 - ab).sqrt() * noise
        x0 = self.predict_x0(x_t, t, self._features(cond), cond.prior)
        return weighted_mse(x0, gt_heatmaps, target_weight)

    # ------------------------------------------------------------------ sampling
    def ddim_times(self, steps: int, start: int | None = None) -> list[tuple[int, int]]:
        """(t, t_next) pairs from `start` (default T-1) down to -1 (= clean), evenly spaced."""
        start = self.timesteps - 1 if start is None else int(start)
        if steps < 1:
            raise ValueError(f"diffusion steps must be >= 1, got {steps}")
        ts = [round(start - (start + 1) * i / steps) for i in range(steps + 1)]
        return list(zip(ts[:-1], ts[1:], strict=True))

    @torch.no_grad()
    def sample(self, cond: DiffusionCond, steps: int = 1, hypotheses: int = 1,
               generator: torch.Generator | None = None, init: torch.Tensor | None = None,
               init_step: int | None = None, noise: torch.Tensor | None = None,
               return_all: bool = False) -> torch.Tensor:
        """DDIM (eta = 0) from noise, or from `init` heatmaps (B, K, h, w) noised to `init_step`.

        K hypotheses are one batch of B*K (sample-major); returns their mean in
        heatmap scale, (B, K, h, w) — or all of them, (B, hypotheses, K, h, w),
        with return_all. `noise` (B*hypotheses, K, h, w) replaces the drawn noise.
        """
        prior = cond.prior
        b, k, h, w = prior.shape
        dev, dt = prior.device, prior.dtype
        feats = self._features(cond)
        start = None
        if noise is None:
            noise = torch.randn((b * hypotheses, k, h, w), device=dev, dtype=dt, generator=generator)
        elif tuple(noise.shape) != (b * hypotheses, k, h, w):
            raise ValueError(f"noise must be {(b * hypotheses, k, h, w)}, got {tuple(noise.shape)}")
        if init is None:
            x = noise
        else:
            start = self.timesteps // 2 if init_step is None else int(init_step)
            ab = self.alphas_cumprod[start].to(dt)
            x0_init = self.to_signal(init).repeat_interleave(hypotheses, dim=0)
            x = ab.sqrt() * x0_init + (1 - ab).sqrt() * noise
        prior_rep = prior.repeat_interleave(hypotheses, dim=0)
        corr = None
        for t, t_next in self.ddim_times(steps, start):
            tt = torch.full((b * hypotheses,), t, device=dev, dtype=torch.long)
            corr = self.correction(x, tt, feats)
            if t_next < 0:
                break
            x0s = self.to_signal(prior_rep + corr).clamp(-self.scale, self.scale)
            ab, ab_next = self.alphas_cumprod[t].to(dt), self.alphas_cumprod[t_next].to(dt)
            eps = (x - ab.sqrt() * x0s) / (1 - ab).sqrt()
            x = ab_next.sqrt() * x0s + (1 - ab_next).sqrt() * eps
        corr = corr.view(b, hypotheses, k, h, w)
        # prior + mean(correction): exactly the prior while the correction is zero.
        return prior[:, None] + corr if return_all else prior + corr.mean(dim=1)
