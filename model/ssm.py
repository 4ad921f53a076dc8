"""Selective scan (the Mamba v1 SSM), with mamba-ssm's `selective_scan_fn` shapes and semantics.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        (per channel d, state n)
    y_t = <C_t, h_t> + D * u_t,   out = y * silu(z)

`selective_scan` runs mamba-ssm's CUDA kernel when it imports and the tensors are on CUDA, else
`selective_scan_chunked`, the pure-PyTorch scan. `selective_scan_ref` is the plain sequential loop
both are tested against.

Why the pure-PyTorch scan looks the way it does (2-core CPU, fp32): the state h is
(batch, dim, N) per step, so any exact scan touches batch*dim*N*L elements several times (decay,
input, recurrence, readout). Streaming tensors of that size through DRAM costs ~1 ns/element per
pass, while the same op on a cache-resident tile costs ~0.05 ns. So the scan is cut into tiles of
(time block x batch chunk) small enough to stay in cache; the expanded (.., N, dim) tensors exist
only per tile and never reach memory. The carried state links tiles of a batch chunk. Inside a tile
the recurrence is a short sequential loop of in-place fused multiply-adds in a time-major layout
(each step one contiguous slab). delta_bias, softplus, D and the silu(z) gate are fused into the
tiles too, so the (L, batch, dim) tensors are read once and the output is written once.
Decays are exp2(delta * A*log2(e)): exp2 is ~3x faster than exp in ATen, and every exponent is
delta*A <= 0, so nothing overflows for any delta (a large delta just decays to 0).
The backward pass is written by hand (a reverse-time scan of the adjoint state, recomputing each
tile's forward from the saved tile-start states, as the CUDA kernel does), so autograd stores only
the (L, batch, dim)-sized inputs plus one state per tile.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG2E = 1.0 / math.log(2.0)
# Elements of one expanded (time x batch x N x dim) tile: 2 MiB of fp32 per tensor, so the two or
# three live tile tensors fit the L2/L3 cache of a small CPU. Measured: 2^18..2^19 is the sweet spot.
TILE_ELEMENTS = 1 << 19
MIN_BLOCK = 4  # shortest time block: below it per-tile op overhead dominates


# --------------------------------------------------------------------------- dispatch
_CUDA_FN = None
_CUDA_TRIED = False


def cuda_scan_fn():
    """mamba-ssm's `selective_scan_fn`, imported once on first use; None when it does not import."""
    global _CUDA_FN, _CUDA_TRIED
    if not _CUDA_TRIED:
        _CUDA_TRIED = True
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception:  # not installed, or built against another torch/CUDA: a normal CPU case
            selective_scan_fn = None
        _CUDA_FN = selective_scan_fn
    return _CUDA_FN


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """Selective scan; same arguments, shapes and results as mamba-ssm's `selective_scan_fn`.

    u, delta, z: (batch, dim, L); A: (dim, N) real; B, C: (batch, N, L); D, delta_bias: (dim,).
    Returns out (batch, dim, L) in u's dtype [, last_state (batch, dim, N) fp32].
    """
    if u.is_cuda:
        fn = cuda_scan_fn()
        if fn is not None:
            return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def _check_shapes(u, delta, A, B, C):
    if A.is_complex():
        raise ValueError("complex A is not supported (Mamba v1 uses real A)")
    if u.dim() != 3 or delta.shape != u.shape:
        shapes = f"{tuple(u.shape)} and {tuple(delta.shape)}"
        raise ValueError(f"u and delta must both be (batch, dim, L); got {shapes}")
    batch, dim, L = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, N); got {tuple(A.shape)}")
    N = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (batch, N, L):
            raise ValueError(f"{name} must be (batch, N, L) = {(batch, N, L)}; got {tuple(t.shape)}")


# --------------------------------------------------------------------------- reference
def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Plain sequential loop over L (fp32): the definition the fast paths are tested against."""
    _check_shapes(u, delta, A, B, C)
    dtype_in = u.dtype
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    u32, A32, B32, C32 = u.float(), A.float(), B.float(), C.float()
    batch, dim, L = u.shape
    h = u32.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(L):
        dA = torch.exp(delta[:, :, t, None] * A32)  # (batch, dim, N)
        dBu = (delta[:, :, t] * u32[:, :, t])[:, :, None] * B32[:, None, :, t]
        h = dA * h + dBu
        ys.append(torch.einsum("bdn,bn->bd", h, C32[:, :, t]))
    out = torch.stack(ys, dim=2) if L else u32.new_zeros(batch, dim, 0)
    if D is not None:
        out = out + u32 * D.float()[:, None]
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out


# --------------------------------------------------------------------------- chunked scan
def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False):
    """Pure-PyTorch cache-tiled scan (see module doc); autograd-friendly, computes in fp32.

    Passing u/delta/z/B/C as (batch, c, L) views of contiguous time-major (L, batch, c) tensors
    (x.permute(1, 2, 0)) saves one transpose copy each; the result is such a view too.
    """
    _check_shapes(u, delta, A, B, C)
    dtype_in = u.dtype
    f32 = lambda t: None if t is None else _time_major(t.float())
    out, last = _TiledScan.apply(
        f32(u), f32(delta), A.float(), f32(B), f32(C),
        None if D is None else D.float(), f32(z),
        None if delta_bias is None else delta_bias.float(), bool(delta_softplus),
    )
    out = out.permute(1, 2, 0).to(dtype_in)
    return (out, last.transpose(1, 2)) if return_last_state else out


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """(batch, c, L) -> contiguous (L, batch, c); free when x is already a view of such a tensor."""
    return x.permute(2, 0, 1).contiguous()


def plan_tiles(batch: int, state: int, L: int, tile_elements: int | None = None) -> tuple[int, int]:
    """(batch chunk, time block) so that chunk * block * state ~ tile_elements (state = N * dim)."""
    tile_elements = TILE_ELEMENTS if tile_elements is None else tile_elements
    block = max(1, min(L, max(MIN_BLOCK, tile_elements // max(1, batch * state))))
    chunk = min(batch, max(1, tile_elements // max(1, block * state)))
    return chunk, block


def _tiles(L: int, batch: int, chunk: int, block: int):
    """Batch chunks, each with its time blocks in order: [(slice_b, [slice_t, ...]), ...]."""
    times = [slice(l0, min(L, l0 + block)) for l0 in range(0, L, block)]
    return [(slice(b0, min(batch, b0 + chunk)), times) for b0 in range(0, batch, chunk)]


class _TiledScan(torch.autograd.Function):
    """Fused scan on time-major fp32 tensors: u, delta, z (L, batch, dim); B, C (L, batch, N).

    Returns out (L, batch, dim) and last_state (batch, N, dim). delta_bias, softplus, D and the
    silu(z) gate are applied per tile, so they cost no extra trips through memory.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus):
        ctx.set_materialize_grads(False)
        L, batch, dim = u.shape
        N = A.shape[1]
        A2 = (A * LOG2E).t().contiguous()  # (N, dim), log2 units: exp(dt*A) = exp2(dt*A2)
        chunk, block = plan_tiles(batch, N * dim, L)
        tiles = _tiles(L, batch, chunk, block)
        out = u.new_empty(L, batch, dim)
        starts = u.new_empty(len(tiles[0][1]) if tiles else 0, batch, N, dim)  # state entering each block
        last = u.new_zeros(batch, N, dim)
        for sb, times in tiles:
            h = last[sb]
            for i, st in enumerate(times):
                starts[i, sb] = h
                dt = _delta(delta[st, sb], delta_bias, softplus)
                uu = u[st, sb]
                x = _tile_states(dt, dt * uu, B[st, sb], A2, h)
                y = torch.matmul(C[st, sb].unsqueeze(2), x).squeeze(2)
                if D is not None:
                    y.addcmul_(uu, D)
                if z is not None:
                    y.mul_(F.silu(z[st, sb]))
                out[st, sb] = y
                h = x[-1]
            last[sb] = h
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, starts)
        ctx.softplus = softplus
        ctx.tiles = tiles
        return out, last

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        u, delta, A, B, C, D, z, delta_bias, starts = ctx.saved_tensors
        softplus, tiles = ctx.softplus, ctx.tiles
        L, batch, dim = u.shape
        N = A.shape[1]
        A2 = (A * LOG2E).t().contiguous()
        At = A.t().contiguous()  # d exp(dt*A)/d dt = exp(dt*A) * A
        g_u, g_delta = torch.empty_like(u), torch.empty_like(delta)
        g_B, g_C = torch.empty_like(B), torch.empty_like(C)
        g_z = torch.empty_like(z) if z is not None else None
        g_A = A.new_zeros(N, dim)
        g_D = D.new_zeros(dim) if D is not None else None
        g_bias = delta_bias.new_zeros(dim) if delta_bias is not None else None
        for sb, times in tiles:
            if grad_last is not None:
                carry = grad_last[sb].float()
            else:
                carry = u.new_zeros(sb.stop - sb.start, N, dim)
            for i in reversed(range(len(times))):
                st = times[i]
                s = (st, sb)
                pre = delta[s] if delta_bias is None else delta[s] + delta_bias
                dt = F.softplus(pre) if softplus else pre
                uu = u[s]
                du = dt * uu
                dA, hbuf = _tile_states_backward(dt, du, B[s], A2, starts[i, sb])
                h = hbuf[1:]
                gy = grad_out[s] if grad_out is not None else u.new_zeros(uu.shape)
                if z is not None:  # out = y * silu(z)
                    zz = z[s]
                    y = torch.matmul(C[s].unsqueeze(2), h).squeeze(2)
                    if D is not None:
                        y.addcmul_(uu, D)
                    g_z[s] = torch.ops.aten.silu_backward(gy * y, zz)
                    gy = gy * F.silu(zz)
                g_uu = None
                if D is not None:  # y += u * D
                    g_D.add_(torch.mul(gy, uu).sum((0, 1)))
                    g_uu = gy * D
                # g_t = dL/dh_t = C_t gy_t + exp(dt_{t+1} A) g_{t+1}  (reverse-time scan)
                g = torch.mul(C[s].unsqueeze(3), gy.unsqueeze(2))
                gs, As = g.unbind(0), dA.unbind(0)
                gs[-1].add_(carry)
                for t in range(len(gs) - 2, -1, -1):
                    gs[t].addcmul_(As[t + 1], gs[t + 1])
                carry = As[0] * gs[0]
                g_C[s] = torch.matmul(h, gy.unsqueeze(3)).squeeze(3)
                g_du = torch.matmul(B[s].unsqueeze(2), g).squeeze(2)
                g_B[s] = torch.matmul(g, du.unsqueeze(3)).squeeze(3)
                q = g.mul_(hbuf[:-1]).mul_(dA)  # dL/d(dt*A) = g_t * h_{t-1} * exp(dt_t A)
                g_A.add_(torch.mul(q, dt.unsqueeze(2)).sum((0, 1)))
                g_dt = q.mul_(At).sum(2).addcmul_(g_du, uu)
                g_u[s] = g_du * dt if g_uu is None else g_uu.addcmul_(g_du, dt)
                if softplus:
                    g_dt = torch.ops.aten.softplus_backward(g_dt, pre, 1.0, 20.0)
                g_delta[s] = g_dt
                if g_bias is not None:
                    g_bias.add_(g_dt.sum((0, 1)))
        return g_u, g_delta, g_A.t(), g_B, g_C, g_D, g_z, g_bias, None


def _delta(raw, bias, softplus):
    dt = raw if bias is None else raw + bias
    return F.softplus(dt) if softplus else dt


def _tile_states(dt, du, Bt, A2, h0):
    """All states of one tile, (Lb, bb, N, dim): h_t = exp2(dt_t A2) h_{t-1} + B_t du_t, from h0."""
    dA = torch.mul(dt.unsqueeze(2), A2).exp2_()
    x = torch.mul(Bt.unsqueeze(3), du.unsqueeze(2))
    xs, As = x.unbind(0), dA.unbind(0)
    xs[0].addcmul_(As[0], h0)
    for t in range(1, len(xs)):
        xs[t].addcmul_(As[t], xs[t - 1])
    return x


def _tile_states_backward(dt, du, Bt, A2, h0):
    """Decays and states of one tile, states with the entering one first: hbuf[t + 1] = h_t."""
    dA = torch.mul(dt.unsqueeze(2), A2).exp2_()
    hbuf = dt.new_empty(dt.shape[0] + 1, *h0.shape)
    hbuf[0] = h0
    torch.mul(Bt.unsqueeze(3), du.unsqueeze(2), out=hbuf[1:])
    hs, As = hbuf.unbind(0), dA.unbind(0)
    for t in range(len(As)):
        hs[t + 1].addcmul_(As[t], hs[t])
    return dA, hbuf
