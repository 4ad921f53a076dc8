"""Selective scan: the chunked pure-PyTorch scan against the sequential reference (forward and grads)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from model import ssm
from model.ssm import selective_scan, selective_scan_chunked, selective_scan_ref

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, N, L, *, large_delta=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    delta = torch.rand(batch, dim, L, generator=g) * 15 + 5 if large_delta else r(batch, dim, L) * 0.5
    return dict(
        u=r(batch, dim, L), delta=delta, A=-(torch.rand(dim, N, generator=g) * 3 + 0.1),
        B=r(batch, N, L), C=r(batch, N, L), D=r(dim), z=r(batch, dim, L), delta_bias=r(dim) * 0.1,
    )


def assert_close(actual, expected, name=""):
    # fp32 rtol 1e-4; atol relative to the tensor's scale: sums over thousands of terms
    # (grads of A, delta_bias, D) carry ~1e-6 relative rounding in either implementation.
    atol = 1e-5 * float(expected.abs().max()) + 1e-7
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=atol, msg=lambda m: f"{name}: {m}")


def run_both(inputs, use=("D", "z", "delta_bias"), softplus=True, last_state=True, loss_on=("out", "last")):
    """Forward + backward of reference and chunked scan on identical leaves; returns both results."""
    results = []
    grads_in = None
    for fn in (selective_scan_ref, selective_scan_chunked):
        names = ("u", "delta", "A", "B", "C") + tuple(use)
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items() if k in names}
        res = fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], D=leaves.get("D"),
                 z=leaves.get("z"), delta_bias=leaves.get("delta_bias"), delta_softplus=softplus,
                 return_last_state=last_state)
        out, last = res if last_state else (res, None)
        if grads_in is None:
            g = torch.Generator().manual_seed(7)
            g_last = None if last is None else torch.randn(last.shape, generator=g)
            grads_in = (torch.randn(out.shape, generator=g), g_last)
        loss = 0
        if "out" in loss_on:
            loss = loss + (out * grads_in[0]).sum()
        if "last" in loss_on and last is not None:
            loss = loss + (last * grads_in[1]).sum()
        loss.backward()
        results.append((out.detach(), None if last is None else last.detach(),
                        {k: v.grad for k, v in leaves.items()}))
    return results


def check(inputs, **kw):
    (o_ref, last_ref, g_ref), (o, last, g) = run_both(inputs, **kw)
    assert o.shape == o_ref.shape == inputs["u"].shape
    assert_close(o, o_ref, "out")
    if last_ref is not None:
        batch, dim, L = inputs["u"].shape
        assert last.shape == (batch, dim, inputs["A"].shape[1])
        assert_close(last, last_ref, "last_state")
    assert set(g) == set(g_ref)
    for k in g_ref:
        assert g[k] is not None, k
        # autograd gives None where a leaf did not reach the loss (C when only last_state is used)
        expected = torch.zeros_like(g[k]) if g_ref[k] is None else g_ref[k]
        assert_close(g[k], expected, f"grad {k}")


@pytest.fixture
def small_tiles(monkeypatch):
    """Force many tiny tiles so batch chunking, time blocks and carries are all exercised."""
    monkeypatch.setattr(ssm, "TILE_ELEMENTS", 400)
    monkeypatch.setattr(ssm, "MIN_SLAB", 48)


def test_short_all_options():
    check(make_inputs(2, 8, 4, 37))


def test_short_no_options():
    check(make_inputs(2, 8, 4, 37, seed=1), use=(), softplus=False, last_state=False)


@pytest.mark.parametrize("use", [("D",), ("z",), ("delta_bias",)])
def test_each_option_alone(use):
    check(make_inputs(3, 5, 6, 19, seed=2), use=use, softplus=False)


def test_tiled_batch_chunks_and_ragged_blocks(small_tiles):
    assert ssm.plan_tiles(5, 24, 50) == (2, 8)  # chunks 2,2,1; blocks of 8 with a ragged last one
    check(make_inputs(5, 6, 4, 50, seed=3))


@pytest.mark.parametrize("L", [16, 17, 23, 50, 97])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_two_level_scan_matches_the_loop(L, reverse, with_h0):
    g = torch.Generator().manual_seed(L)
    x = torch.randn(L, 3, 5, generator=g, dtype=torch.float64)
    a = torch.rand(L, 3, 5, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, 5, generator=g, dtype=torch.float64) if with_h0 else None
    expected = x.clone()
    prev = h0 if h0 is not None else torch.zeros(3, 5, dtype=torch.float64)
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        expected[t] += a[t] * prev
        prev = expected[t]
    assert ssm._two_level(x)
    got = x.clone()
    ssm._scan_(got, a.clone(), h0, reverse=reverse)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_two_level_tiles_with_carries(monkeypatch):
    monkeypatch.setattr(ssm, "TILE_ELEMENTS", 2000)
    monkeypatch.setattr(ssm, "MIN_SLAB", 48)
    # chunks of 3 and 2 sequences, 2 blocks of 25 steps, each scanned as 6 chunks of 4 + 1 ragged step
    assert ssm.plan_tiles(5, 24, 50) == (3, 25)
    check(make_inputs(5, 6, 4, 50, seed=13))


def test_grad_of_out_only_and_last_only(small_tiles):
    inputs = make_inputs(2, 4, 3, 23, seed=4)
    check(inputs, loss_on=("out",))
    check(inputs, loss_on=("last",))


def test_long_sequence():
    check(make_inputs(1, 4, 8, 2304, seed=5))


def test_many_tiles(small_tiles):
    check(make_inputs(2, 3, 4, 301, seed=6))


def test_large_delta_no_softplus():
    inputs = make_inputs(2, 4, 16, 2048, large_delta=True, seed=8)
    check(inputs, softplus=False)
    out = selective_scan_chunked(**{k: inputs[k] for k in ("u", "delta", "A", "B", "C")})
    assert torch.isfinite(out).all()


def test_large_delta_large_A_stays_finite(small_tiles):
    # delta*A down to -2000: exp underflows to 0 instead of overflowing anywhere, grads included.
    inputs = make_inputs(2, 4, 5, 64, large_delta=True, seed=9)
    inputs["A"] = inputs["A"] * 30
    check(inputs, use=("D",), softplus=False)


def test_low_precision_inputs_keep_dtype_and_compute_fp32():
    inputs = {k: v.bfloat16() for k, v in make_inputs(2, 8, 4, 33, seed=10).items()}
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C")]
    kw = dict(D=inputs["D"], z=inputs["z"], delta_bias=inputs["delta_bias"], delta_softplus=True)
    out = selective_scan_chunked(*args, **kw)
    ref = selective_scan_ref(*args, **kw)
    assert out.dtype == torch.bfloat16
    scale = float(ref.float().abs().max())
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2 * scale)


def test_time_major_views_are_accepted_and_returned():
    inputs = make_inputs(3, 8, 4, 21, seed=11)
    as_view = lambda v: v.permute(2, 0, 1).contiguous().permute(1, 2, 0) if v.dim() == 3 else v
    tm = {k: as_view(v) for k, v in inputs.items()}
    out = selective_scan_chunked(tm["u"], tm["delta"], tm["A"], tm["B"], tm["C"], D=tm["D"], z=tm["z"])
    ref = selective_scan_ref(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                             D=inputs["D"], z=inputs["z"])
    assert_close(out, ref)
    assert out.permute(2, 0, 1).is_contiguous()


def test_empty_sequence():
    inp = make_inputs(2, 8, 4, 0)
    args = [inp[k] for k in ("u", "delta", "A", "B", "C")]
    out, last = selective_scan_chunked(*args, return_last_state=True)
    assert out.shape == (2, 8, 0) and torch.equal(last, torch.zeros(2, 8, 4))


def test_bad_shapes_raise():
    inp = make_inputs(2, 8, 4, 10)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan_chunked(inp["u"], inp["delta"], inp["A"], inp["B"][:, :3], inp["C"])
    with pytest.raises(ValueError, match="A must be"):
        selective_scan_chunked(inp["u"], inp["delta"], inp["A"][:4], inp["B"], inp["C"])
    with pytest.raises(ValueError, match="u and delta"):
        selective_scan_chunked(inp["u"], inp["delta"][..., :5], inp["A"], inp["B"], inp["C"])


# --------------------------------------------------------------------------- dispatch
def test_cpu_tensors_take_the_pure_torch_path(monkeypatch):
    def kernel(*args, **kwargs):
        raise AssertionError("the CUDA kernel must not run on CPU tensors")

    monkeypatch.setattr(ssm, "cuda_scan_fn", lambda: kernel)
    inp = make_inputs(2, 8, 4, 17)
    args = [inp[k] for k in ("u", "delta", "A", "B", "C")]
    out, last = selective_scan(*args, D=inp["D"], z=inp["z"], delta_bias=inp["delta_bias"],
                               delta_softplus=True, return_last_state=True)
    ref, ref_last = selective_scan_chunked(*args, D=inp["D"], z=inp["z"], delta_bias=inp["delta_bias"],
                                           delta_softplus=True, return_last_state=True)
    assert torch.equal(out, ref) and torch.equal(last, ref_last)


def test_cuda_tensors_go_to_the_kernel_with_all_arguments(monkeypatch):
    calls = []
    monkeypatch.setattr(ssm, "cuda_scan_fn", lambda: lambda *a: calls.append(a) or "kernel-result")
    u = types.SimpleNamespace(is_cuda=True)
    assert selective_scan(u, "dt", "A", "B", "C", "D", "z", "bias", True, True) == "kernel-result"
    assert calls == [(u, "dt", "A", "B", "C", "D", "z", "bias", True, True)]


def test_kernel_import_is_lazy_and_cached(monkeypatch):
    monkeypatch.setattr(ssm, "_CUDA_TRIED", False)
    monkeypatch.setattr(ssm, "_CUDA_FN", None)
    fake = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    fake.selective_scan_fn = lambda *a: None
    for name in ("mamba_ssm", "mamba_ssm.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "mamba_ssm.ops.selective_scan_interface", fake)
    assert ssm.cuda_scan_fn() is fake.selective_scan_fn
    monkeypatch.delitem(sys.modules, "mamba_ssm.ops.selective_scan_interface")
    assert ssm.cuda_scan_fn() is fake.selective_scan_fn  # cached: no second import


def test_failed_kernel_import_means_none(monkeypatch):
    monkeypatch.setattr(ssm, "_CUDA_TRIED", False)
    monkeypatch.setattr(ssm, "_CUDA_FN", None)
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # import raises ImportError
    assert ssm.cuda_scan_fn() is None


@pytest.mark.skipif(not torch.cuda.is_available() or ssm.cuda_scan_fn() is None,
                    reason="needs CUDA and mamba-ssm")
def test_cuda_kernel_matches_pure_torch():
    inp = {k: v.cuda() for k, v in make_inputs(2, 64, 16, 1000, seed=12).items()}
    args = [inp[k] for k in ("u", "delta", "A", "B", "C")]
    kw = dict(D=inp["D"], z=inp["z"], delta_bias=inp["delta_bias"], delta_softplus=True,
              return_last_state=True)
    out, last = selective_scan(*args, **kw)
    ref, ref_last = selective_scan_chunked(*args, **kw)
    assert_close(out, ref, "out")
    assert_close(last, ref_last, "last")
