"""Selective-scan speed: the sequential reference loop vs the pure-PyTorch chunked scan, on CPU.

    python bench/scan_bench.py [--quick] [--threads 2] [--reps 3] [--temporal]

Both run in the same process, interleaved, on the same inputs; the ratio is ref time / chunked
time from the fastest repetition of each (the least disturbed by other load on the machine).
On a shared, oversubscribed machine 2-thread wall times swing by 10x and more: with libgomp's
default (spinning) wait policy every parallel op can stall for a scheduler tick, which hits the
reference's ~10k small ops hardest (ATen's float exp is threaded even for tiny tensors). Run with
OMP_WAIT_POLICY=PASSIVE, or --threads 1, there; the CPU-time column (process CPU seconds) is
steadier too.
The floor for the project: >= 5x forward at batch 8, dim 256, N 16, L 3072 on 2 threads.
--temporal also times the GLS TemporalEncoder (tiny-cpu shapes, batch 8) per window.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from model.ssm import plan_tiles, selective_scan_chunked, selective_scan_ref


def make(batch, dim, N, L, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(batch, dim, L, generator=g),
        delta=torch.randn(batch, dim, L, generator=g) - 2.0,  # softplus(.) ~ 0.13: Mamba's usual dt range
        A=-torch.arange(1, N + 1, dtype=torch.float32).repeat(dim, 1),  # Mamba's A init
        B=torch.randn(batch, N, L, generator=g),
        C=torch.randn(batch, N, L, generator=g),
        D=torch.ones(dim),
        z=torch.randn(batch, dim, L, generator=g),
        delta_bias=torch.randn(dim, generator=g) * 0.1,
    )


def run(fn, inputs, backward):
    if backward:
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    else:
        leaves = inputs
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.set_grad_enabled(backward):
        out = fn(**leaves, delta_softplus=True)
        if backward:
            out.square().mean().backward()
    return time.perf_counter() - t0, time.process_time() - c0


def bench(shape, backward, reps):
    """Interleaved repetitions; returns [(wall, cpu), ...] for the reference and the chunked scan."""
    inputs = make(*shape)
    run(selective_scan_chunked, inputs, backward)  # warm-up (allocator, threads)
    ref, new = [], []
    for _ in range(reps):
        ref.append(run(selective_scan_ref, inputs, backward))
        new.append(run(selective_scan_chunked, inputs, backward))
    return ref, new


def bench_temporal(reps: int, quick: bool) -> None:
    """ms per window of TemporalEncoder.forward (no grad) on tiny-cpu backbone tokens (192 ch, 16x12)."""
    from model.config import get_preset
    from model.temporal import TemporalEncoder

    # (temporal_stride, temporal_dim, d_state, expand), all with T=5, 1 global + 1 local block
    variants = [(16, 32, 16, 2), (16, 64, 16, 2), (8, 32, 16, 2), (8, 64, 16, 2)]
    if not quick:
        variants += [(8, 64, 8, 2), (8, 64, 8, 1)]
    batches = (8,) if quick else (1, 8)
    print("\n# TemporalEncoder forward (no grad), T=5, 1 global + 1 local block\n")
    print("| grid (stride) | dim | d_state | expand | batch | ms / window (best) | ms / window (median) |")
    print("|---|---|---|---|---|---|---|")
    for stride, dim, d_state, expand in variants:
        cfg = get_preset("tiny-cpu", temporal_stride=stride, temporal_dim=dim, d_state=d_state, expand=expand,
                         window=5, global_blocks=1, local_blocks=1, local_window=(8, 6))
        torch.manual_seed(0)
        enc = TemporalEncoder(cfg, 192).eval()
        for batch in batches:
            feats = torch.randn(batch, cfg.window, 192, *cfg.patch_grid)
            times = []
            with torch.no_grad():
                enc(feats)
                for _ in range(reps):
                    t0 = time.perf_counter()
                    enc(feats)
                    times.append((time.perf_counter() - t0) / batch * 1000)
            th, tw = cfg.temporal_grid
            print(f"| {th}x{tw} (1/{stride}) | {dim} | {d_state} | {expand} | {batch} | {min(times):.1f} | "
                  f"{statistics.median(times):.1f} |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer and smaller cases")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--temporal", action="store_true", help="also time the TemporalEncoder per window")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    reps = args.reps or (2 if args.quick else 3)
    # (label, (batch, dim, N, L), backward)
    cases = [("floor shape, forward", (8, 256, 16, 3072), False)]
    if args.quick:
        cases += [("fwd+bwd", (2, 256, 16, 1024), True)]
    else:
        cases += [
            ("unified T*H*W scan (tiny-cpu, x2 dirs), forward", (16, 128, 16, 3840), False),
            ("fwd+bwd", (2, 256, 16, 3072), True),
        ]
    cmd = "python bench/scan_bench.py" + " ".join([""] + (argv if argv is not None else sys.argv[1:]))
    wait = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"# selective scan: reference loop vs chunked (torch {torch.__version__}, {args.threads} threads, "
          f"OMP_WAIT_POLICY={wait}, best of {reps})\n")
    print("| case | batch, dim, N, L | tiles (chunk, block) | ref s | chunked s | ratio (best) "
          "| ratio (median) | ratio (CPU time) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, shape, backward in cases:
        ref, new = bench(shape, backward, reps)
        batch, dim, N, L = shape
        tiles = plan_tiles(batch, N * dim, L)
        wall_r, wall_n = [w for w, _ in ref], [w for w, _ in new]
        cpu = min(c for _, c in ref) / min(c for _, c in new)
        median = statistics.median(wall_r) / statistics.median(wall_n)
        print(f"| {label} | {batch}, {dim}, {N}, {L} | {tiles} | {min(wall_r):.3f} | {min(wall_n):.4f} | "
              f"{min(wall_r) / min(wall_n):.1f}x | {median:.1f}x | {cpu:.1f}x |", flush=True)
    if args.temporal:
        bench_temporal(max(reps, 3), args.quick)
    print(f"\ncommand: `{cmd}`")


if __name__ == "__main__":
    main()
