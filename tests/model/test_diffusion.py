"""Heatmap diffusion head: schedule, zero-init, DDIM determinism, K-hypothesis averaging, learnability."""

from __future__ import annotations

import pytest
import torch

from model.config import get_preset
from model.diffusion import DiffusionCond, HeatmapDiffusion, cosine_alphas_cumprod, weighted_mse

K, H, W = 17, 64, 48


def _head(d=16, c=8, **kw):
    torch.manual_seed(0)
    cfg = get_preset("tiny-cpu", diffusion_dim=d, **kw)
    return HeatmapDiffusion(cfg, c16=c, c8=c, c4=c)


def _cond(b=2, c=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return DiffusionCond(
        f16=torch.randn(b, c, H // 4, W // 4, generator=g), f8=torch.randn(b, c, H // 2, W // 2, generator=g),
        f4=torch.randn(b, c, H, W, generator=g), prior=torch.rand(b, K, H, W, generator=g),
    )


def _randomise_output(head):
    """Stand-in for training: give the zero-initialised correction layer non-zero weights."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        head.out.weight.copy_(torch.randn(head.out.weight.shape, generator=g) * 0.3)
        head.out_bias.copy_(torch.randn(head.out_bias.shape, generator=g) * 0.1)
    return head


def test_cosine_schedule():
    ab = cosine_alphas_cumprod(1000)
    assert ab.shape == (1000,)
    assert (ab[1:] < ab[:-1]).all()
    assert ab[0] > 0.999 and ab[-1] < 1e-4 and ab[-1] > 0


def test_ddim_times():
    head = _head()
    assert head.ddim_times(1) == [(999, -1)]
    assert head.ddim_times(2) == [(999, 499), (499, -1)]
    assert head.ddim_times(2, start=300) == [(300, 150), (150, -1)]
    with pytest.raises(ValueError):
        head.ddim_times(0)


def test_signal_scaling_round_trip():
    head = _head(signal_scale=2.0)
    x = torch.rand(2, K, H, W)
    s = head.to_signal(x)
    assert s.min() >= -2 and s.max() <= 2
    assert torch.allclose(head.from_signal(s), x, atol=1e-6)


def test_untrained_head_returns_the_prior_exactly():
    head = _head().eval()
    cond = _cond()
    for seed in (0, 1):
        out = head.sample(cond, steps=2, hypotheses=3, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out, cond.prior)
    gt = torch.rand(2, K, H, W)
    w = torch.ones(2, K)
    assert torch.allclose(head.training_loss(cond, gt, w), weighted_mse(cond.prior, gt, w))


@pytest.mark.parametrize("steps", [1, 2])
def test_ddim_is_deterministic_by_seed(steps):
    head = _randomise_output(_head()).eval()
    cond = _cond()
    a = head.sample(cond, steps=steps, hypotheses=2, generator=torch.Generator().manual_seed(7))
    b = head.sample(cond, steps=steps, hypotheses=2, generator=torch.Generator().manual_seed(7))
    c = head.sample(cond, steps=steps, hypotheses=2, generator=torch.Generator().manual_seed(8))
    assert a.shape == (2, K, H, W)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4


@pytest.mark.parametrize("steps", [1, 3])
def test_k_hypotheses_are_independent_and_averaged(steps):
    head = _randomise_output(_head()).eval()
    b, k_hyp = 2, 4
    cond = _cond(b=b)
    noise = torch.randn(b * k_hyp, K, H, W, generator=torch.Generator().manual_seed(3))
    batched = head.sample(cond, steps=steps, hypotheses=k_hyp, noise=noise)
    every = head.sample(cond, steps=steps, hypotheses=k_hyp, noise=noise, return_all=True)
    assert every.shape == (b, k_hyp, K, H, W)
    assert torch.allclose(every.mean(1), batched, atol=1e-6)
    # Each hypothesis equals a separate single-hypothesis run from the same noise (sample-major batch).
    nz = noise.view(b, k_hyp, K, H, W)
    separate = torch.stack([head.sample(cond, steps=steps, hypotheses=1, noise=nz[:, j])
                            for j in range(k_hyp)], dim=1)
    assert torch.allclose(separate, every, atol=1e-5)
    assert torch.allclose(separate.mean(1), batched, atol=1e-5)
    assert (every[:, 0] - every[:, 1]).abs().max() > 1e-4  # hypotheses really differ
    with pytest.raises(ValueError, match="noise must be"):
        head.sample(cond, hypotheses=k_hyp, noise=noise[:1])


def test_prediction_depends_on_the_noisy_heatmap_through_the_mask():
    head = _randomise_output(_head()).eval()
    cond = _cond(b=1)
    feats = head._features(cond)
    t = torch.tensor([10])
    x1 = torch.full((1, K, H, W), -2.0)
    x2 = x1.clone()
    x2[:, :, 30:34, 20:24] = 2.0  # a joint hypothesis at one spot
    with torch.no_grad():
        p1 = head.predict_x0(x1, t, feats, cond.prior)
        p2 = head.predict_x0(x2, t, feats, cond.prior)
        # A constant mask looks up the plain spatial mean: shifting x_t uniformly changes nothing.
        p3 = head.predict_x0(x1 + 0.0 * x1, t, feats, cond.prior)
    assert (p1 - p2).abs().max() > 1e-3
    assert torch.equal(p1, p3)


def test_prior_init_sampling_is_deterministic():
    head = _randomise_output(_head()).eval()
    cond = _cond()
    a = head.sample(cond, steps=2, hypotheses=2, generator=torch.Generator().manual_seed(1), init=cond.prior,
                    init_step=300)
    b = head.sample(cond, steps=2, hypotheses=2, generator=torch.Generator().manual_seed(1), init=cond.prior,
                    init_step=300)
    n = head.sample(cond, steps=2, hypotheses=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, n)


@pytest.mark.slow
def test_head_learns_heatmaps_from_features():
    """With a zero prior, the decoder must learn to read the GT out of the 1/4 features."""
    torch.manual_seed(0)
    b, h, w = 2, 32, 24  # half-size maps keep this fast; the head is size-agnostic
    ys = torch.arange(h).view(1, 1, h, 1).float()
    xs = torch.arange(w).view(1, 1, 1, w).float()
    cx = torch.rand(b, K, 1, 1) * (w - 6) + 3
    cy = torch.rand(b, K, 1, 1) * (h - 6) + 3
    gt = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0)
    c = K + 4
    cond = DiffusionCond(f16=torch.randn(b, c, h // 4, w // 4), f8=torch.randn(b, c, h // 2, w // 2),
                         f4=torch.cat([gt, torch.randn(b, 4, h, w)], 1), prior=torch.zeros(b, K, h, w))
    head = _head(d=32, c=c)
    wt = torch.ones(b, K)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    first = None
    for _ in range(100):
        loss = head.training_loss(cond, gt, wt, generator=gen)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    err = weighted_mse(head.sample(cond, steps=1, hypotheses=2, generator=gen), gt, wt)
    assert err.item() < 0.5 * first, (first, err.item())


def test_conv_decoder_untrained_returns_the_prior_and_loads_old_files():
    head = _head(diffusion_decoder="lookup+conv").eval()
    cond = _cond()
    out = head.sample(cond, steps=2, hypotheses=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, cond.prior)
    old = _head().state_dict()  # a "lookup" head's weights: all present in the new one
    missing, unexpected = head.load_state_dict(old, strict=False)
    assert not unexpected and all(name.startswith("local.") for name in missing)
    with pytest.raises(ValueError, match="diffusion_decoder"):
        _head(diffusion_decoder="unet")


def test_conv_decoder_learns_to_follow_the_noisy_heatmap():
    """At a low noise step x_t holds the target: the conv decoder learns to copy it (the lookup decoder
    cannot place a peak where x_t has one), so hypotheses drawn from different noise differ."""
    torch.manual_seed(0)
    b, h, w = 4, 32, 24
    ys = torch.arange(h).view(1, 1, h, 1).float()
    xs = torch.arange(w).view(1, 1, 1, w).float()
    losses = {}
    for decoder in ("lookup", "lookup+conv"):
        head = _head(d=16, c=8, diffusion_decoder=decoder)
        cond = DiffusionCond(f16=torch.randn(b, 8, h // 4, w // 4), f8=torch.randn(b, 8, h // 2, w // 2),
                             f4=torch.randn(b, 8, h, w), prior=torch.zeros(b, K, h, w))
        opt = torch.optim.Adam(head.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(0)
        for _ in range(120):  # a new random target each step: only x_t says where the peak is
            c = torch.rand(2, b, K, 1, 1, generator=gen)
            gt = torch.exp(-((xs - c[0] * (w - 1)) ** 2 + (ys - c[1] * (h - 1)) ** 2) / 8.0)
            t = torch.full((b,), 50)
            noise = torch.randn(gt.shape, generator=gen)
            ab = head.alphas_cumprod[t].view(b, 1, 1, 1)
            x_t = ab.sqrt() * head.to_signal(gt) + (1 - ab).sqrt() * noise
            x0 = head.predict_x0(x_t, t, head._features(cond), cond.prior)
            loss = weighted_mse(x0, gt, torch.ones(b, K))
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[decoder] = loss.item()
        if decoder == "lookup+conv":
            every = head.eval().sample(cond, steps=3, hypotheses=3, generator=gen, return_all=True)
            assert (every[:, 0] - every[:, 1]).abs().max() > 1e-3  # hypotheses differ
    assert losses["lookup+conv"] < 0.5 * losses["lookup"], losses
