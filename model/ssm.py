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
(each step one contiguous slab); with few sequences (tiny slabs, long tiles) it runs in two levels,
chunks in parallel then a carry across chunks, to cut the op count. delta_bias, softplus, D and
the silu(z) gate are fused into the tiles too, so the (L, batch, dim) tensors are read once and
the output is written once.
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
# three live tile tensors stay in a small CPU's L2/L3 (measured on a 2-core box: 2^18..2^20 are
# within ~10%, 2^21 is ~40% slower, and the shared cache makes the smaller end safer).
TILE_ELEMENTS = 1 << 19
# Smallest per-step slab (batch chunk x N x dim): each recurrence step is one op over it, and
# below ~32K elements the per-op overhead outweighs the work.
MIN_SLAB = 1 << 15
# Tiles whose slabs are smaller than this (few sequences, e.g. batch 1) and that have at least
# TWO_LEVEL_MIN_STEPS steps scan in two levels (see _scan_): ~2*sqrt(2*steps) ops instead of steps,
# for two extra passes over the tile (measured: a win at 2K-element slabs, a loss at 8K).
TWO_LEVEL_MAX_SLAB = 1 << 12
TWO_LEVEL_MIN_STEPS = 16


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

    Works on time-major (L, batch, c) storage. Passing u/delta/z/B/C as (batch, c, L) views
    x.permute(1, 2, 0) of contiguous (L, batch, c) tensors, as the Mamba blocks do, saves one
    transpose each; the result is such a view too.
    """
    _check_shapes(u, delta, A, B, C)
    if u.numel() == 0:  # nothing to tile (L == 0 or batch == 0): the loop handles it exactly
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    dtype_in = u.dtype
    f32 = lambda t: None if t is None else _time_major(t.float())
    args = (u, delta, A, B, C, D, z, delta_bias)
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args)
    out, last = _TiledScan.apply(
        f32(u), f32(delta), A.float(), f32(B), f32(C),
        None if D is None else D.float(), f32(z),
        None if delta_bias is None else delta_bias.float(), bool(delta_softplus),
        bool(return_last_state), need_grad,
    )
    out = out.permute(1, 2, 0).to(dtype_in)
    return (out, last.transpose(1, 2)) if return_last_state else out


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """(batch, c, L) -> contiguous (L, batch, c).

    Free when x is a view of time-major storage. From the usual contiguous (batch, c, L) it is one
    2-D transpose of (batch*c, L), which ATen does ~5x faster than the equivalent 3-D permute copy.
    """
    batch, c, L = x.shape
    if x.is_contiguous() and L > 1 and batch * c > 1:
        return x.reshape(batch * c, L).t().contiguous().view(L, batch, c)
    return x.permute(2, 0, 1).contiguous()


def plan_tiles(batch: int, state: int, L: int, tile_elements: int | None = None) -> tuple[int, int]:
    """(batch chunk, time block) for a scan with `state` = N * dim elements per sequence and step.

    The time block is as long as fits with a slab of >= MIN_SLAB elements per step; then the batch
    chunk fills the tile. Blocks are balanced so a ragged last block is not tiny.
    """
    tile_elements = TILE_ELEMENTS if tile_elements is None else tile_elements
    min_chunk = min(batch, max(1, -(-MIN_SLAB // state)))
    block = max(1, min(L, tile_elements // (min_chunk * state)))
    block = -(-L // -(-L // block)) if L else 1  # same number of blocks, evened out
    chunk = min(batch, max(min_chunk, tile_elements // (block * state)))
    return chunk, block


def _tiles(L: int, batch: int, chunk: int, block: int):
    """Batch chunks, each with its time blocks in order: [(slice_b, [slice_t, ...]), ...]."""
    times = [slice(l0, min(L, l0 + block)) for l0 in range(0, L, block)]
    return [(slice(b0, min(batch, b0 + chunk)), times) for b0 in range(0, batch, chunk)]


class _Workspace:
    """Flat buffers reused by every tile: fresh multi-MiB allocations per tile would page-fault."""

    def __init__(self, like: torch.Tensor, numel: int, count: int):
        self.bufs = [like.new_empty(numel) for _ in range(count)]

    def get(self, i: int, *shape: int) -> torch.Tensor:
        return self.bufs[i][: math.prod(shape)].view(shape)


class _TiledScan(torch.autograd.Function):
    """Fused scan on time-major fp32 tensors: u, delta, z (L, batch, dim); B, C (L, batch, N).

    Returns out (L, batch, dim) and last_state (batch, N, dim). delta_bias, softplus, D and the
    silu(z) gate are applied per tile, so they cost no extra trips through memory.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, need_last, need_grad):
        ctx.set_materialize_grads(False)
        L, batch, dim = u.shape
        N = A.shape[1]
        A2 = (A * LOG2E).t().contiguous()  # (N, dim), log2 units: exp(dt*A) = exp2(dt*A2)
        chunk, block = plan_tiles(batch, N * dim, L)
        tiles = _tiles(L, batch, chunk, block)
        n_blocks = -(-L // block)
        ws = _Workspace(u, block * chunk * N * dim, 3)
        out = u.new_empty(L, batch, dim)
        # starts[i - 1]: state entering time block i >= 1, kept only for backward (block 0 starts at 0)
        starts = u.new_empty(n_blocks - 1, batch, N, dim) if need_grad and n_blocks > 1 else None
        last = u.new_empty(batch, N, dim) if need_last else None
        for sb, times in tiles:
            nb = sb.stop - sb.start
            h = None
            for i, st in enumerate(times):
                s = (st, sb)
                shape = (st.stop - st.start, nb, N, dim)
                dt = _delta(delta[s], delta_bias, softplus)
                uu = u[s]
                dA, x = ws.get(0, *shape), ws.get(1, *shape)
                torch.mul(dt.unsqueeze(2), A2, out=dA).exp2_()
                torch.mul(B[s].unsqueeze(3), (dt * uu).unsqueeze(2), out=x)
                _scan_(x, dA, h)
                if i + 1 < len(times):
                    h = ws.get(2, nb, N, dim).copy_(x[-1])
                    if starts is not None:
                        starts[i, sb] = h
                elif last is not None:
                    last[sb] = x[-1]
                y = out[s]
                if y.is_contiguous():  # whole batch in one chunk: write straight into the output
                    torch.matmul(C[s].unsqueeze(2), x, out=y.unsqueeze(2))
                else:
                    y.copy_(torch.matmul(C[s].unsqueeze(2), x).squeeze(2))
                if D is not None:
                    y.addcmul_(uu, D)
                if z is not None:
                    y.mul_(F.silu(z[s]))
        if need_grad:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, starts)
            ctx.softplus = softplus
            ctx.tiles = tiles
        return out, last

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        u, delta, A, B, C, D, z, delta_bias, starts = ctx.saved_tensors
        softplus, tiles = ctx.softplus, ctx.tiles
        if grad_out is not None:  # arrives in the caller's layout, often (batch, dim, L)-contiguous
            grad_out = _time_major(grad_out.permute(1, 2, 0))
        L, batch, dim = u.shape
        N = A.shape[1]
        A2 = (A * LOG2E).t().contiguous()
        At = A.t().contiguous()  # d exp(dt*A)/d dt = exp(dt*A) * A
        chunk, block = tiles[0][0].stop - tiles[0][0].start, tiles[0][1][0].stop
        ws = _Workspace(u, (block + 1) * chunk * N * dim, 4)
        g_u, g_delta = torch.empty_like(u), torch.empty_like(delta)
        g_B, g_C = torch.empty_like(B), torch.empty_like(C)
        g_z = torch.empty_like(z) if z is not None else None
        g_A = A.new_zeros(N, dim)
        g_D = D.new_zeros(dim) if D is not None else None
        g_bias = delta_bias.new_zeros(dim) if delta_bias is not None else None
        for sb, times in tiles:
            nb = sb.stop - sb.start
            carry = grad_last[sb].float() if grad_last is not None else u.new_zeros(nb, N, dim)
            for i in reversed(range(len(times))):
                st = times[i]
                s = (st, sb)
                lb = st.stop - st.start
                pre = delta[s] if delta_bias is None else delta[s] + delta_bias
                dt = F.softplus(pre) if softplus else pre
                uu = u[s]
                du = dt * uu
                # recompute the tile: hbuf[t + 1] = h_t, hbuf[0] = state entering the tile
                dA, g = ws.get(0, lb, nb, N, dim), ws.get(2, lb, nb, N, dim)
                hbuf = ws.get(1, lb + 1, nb, N, dim)
                torch.mul(dt.unsqueeze(2), A2, out=dA).exp2_()
                if i == 0:
                    hbuf[0] = 0
                else:
                    hbuf[0] = starts[i - 1, sb]
                h = hbuf[1:]
                torch.mul(B[s].unsqueeze(3), du.unsqueeze(2), out=h)
                two_level = _two_level(h)
                tmp = ws.get(3, lb, nb, N, dim)  # scratch: the two-level scan clobbers its coefficients
                _scan_(h, tmp.copy_(dA) if two_level else dA, hbuf[0])
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
                # g_t = dL/dh_t = C_t gy_t + exp(dt_{t+1} A) g_{t+1}: a reverse-time scan
                torch.mul(C[s].unsqueeze(3), gy.unsqueeze(2), out=g)
                if two_level:  # coefficient of g_{t+1} in g_t is exp(dt_{t+1} A); the carry enters with 1
                    tmp[:-1] = dA[1:]
                    tmp[-1] = 1.0
                    _scan_(g, tmp, carry, reverse=True)
                else:
                    gs, As = g.unbind(0), dA.unbind(0)
                    gs[-1].add_(carry)
                    for t in range(lb - 2, -1, -1):
                        gs[t].addcmul_(As[t + 1], gs[t + 1])
                carry = dA[0] * g[0]
                # contractions over dim: mul + sum (batched (N x dim) @ (dim x 1) matmuls are ~10x slower)
                g_C[s] = torch.mul(h, gy.unsqueeze(2), out=tmp).sum(3)
                g_B[s] = torch.mul(g, du.unsqueeze(2), out=tmp).sum(3)
                g_du = torch.matmul(B[s].unsqueeze(2), g).squeeze(2)
                q = g.mul_(hbuf[:-1]).mul_(dA)  # dL/d(dt*A) = g_t * h_{t-1} * exp(dt_t A)
                g_A.add_(torch.mul(q, dt.unsqueeze(2), out=dA).sum((0, 1)))
                g_dt = q.mul_(At).sum(2).addcmul_(g_du, uu)
                g_u[s] = g_du * dt if g_uu is None else g_uu.addcmul_(g_du, dt)
                if softplus:
                    g_dt = torch.ops.aten.softplus_backward(g_dt, pre, 1.0, 20.0)
                g_delta[s] = g_dt
                if g_bias is not None:
                    g_bias.add_(g_dt.sum((0, 1)))
        return g_u, g_delta, g_A.t(), g_B, g_C, g_D, g_z, g_bias, None, None, None


def _delta(raw, bias, softplus):
    dt = raw if bias is None else raw + bias
    return F.softplus(dt) if softplus else dt


def _two_level(x: torch.Tensor) -> bool:
    return x.shape[0] >= TWO_LEVEL_MIN_STEPS and x[0].numel() < TWO_LEVEL_MAX_SLAB


def _scan_(x, a, h0, reverse=False):
    """In place along time (dim 0): x_t += a_t * x_{t-1}, x_{-1} = h0 (None: zeros).

    reverse: x_t += a_t * x_{t+1}, x_{L} = h0. Step by step when the per-step slab is big enough for
    one op per step to be cheap; otherwise in two levels, which clobbers `a`: split the steps into
    nc chunks of lc, scan all chunks at once from zero (lc - 1 ops, also turning `a` into running
    decay products), carry the true states across chunk boundaries (nc small ops), then add each
    chunk's entering state times the running decay (one op). Every factor is a product of decays
    <= 1, so this is as stable as the plain loop.
    """
    L = x.shape[0]
    if not _two_level(x):
        xs, As = x.unbind(0), a.unbind(0)
        steps = range(L - 1, -1, -1) if reverse else range(L)
        for i, t in enumerate(steps):
            prev = h0 if i == 0 else xs[t + 1 if reverse else t - 1]
            if prev is not None:
                xs[t].addcmul_(As[t], prev)
        return
    lc = max(2, round(math.sqrt(L / 2)))
    nc, r = divmod(L, lc)
    main = slice(r, L) if reverse else slice(0, L - r)
    xv, av = x[main].view(nc, lc, *x.shape[1:]), a[main].view(nc, lc, *x.shape[1:])
    for j in range(lc - 2, -1, -1) if reverse else range(1, lc):
        p = j + 1 if reverse else j - 1
        xv[:, j].addcmul_(av[:, j], xv[:, p])
        av[:, j].mul_(av[:, p])
    H = x.new_empty(nc, *x.shape[1:])  # H[c]: true state entering chunk c (in scan direction)
    order = range(nc - 1, -1, -1) if reverse else range(nc)
    last = 0 if reverse else lc - 1  # a chunk's final position in scan direction
    for i, c in enumerate(order):
        if i == 0:
            H[c] = 0 if h0 is None else h0
        else:
            pc = c + 1 if reverse else c - 1
            torch.addcmul(xv[pc, last], av[pc, last], H[pc], out=H[c])
    xv.addcmul_(av, H.unsqueeze(1))
    for t in range(r - 1, -1, -1) if reverse else range(L - r, L):  # the ragged steps, one by one
        x[t].addcmul_(a[t], x[t + 1] if reverse else x[t - 1])
