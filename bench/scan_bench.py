"""Selective-scan speed: the sequential reference loop vs the pure-PyTorch chunked scan, on CPU.

    python bench/scan_bench.py [--quick] [--threads 2] [--reps 3] [--temporal]

Both run in the same process, interleaved, on the same inputs; the ratio is ref time / chunked
time from the fastest repetition of each (the least disturbed by other load on the machine).
The floor for the project: >= 5x forward at batch 8, dim 256, N 16, L 3072 on 2 threads.
--temporal also times the GLS TemporalEncoder (tiny-cpu shapes, batch 8) per window.
"""

from __future__ import annotations

import argparse
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
    t0 = time.perf_counter()
    with torch.set_grad_enabled(backward):
        out = fn(**leaves, delta_softplus=True)
        if backward:
            out.square().mean().backward()
    return time.perf_counter() - t0


def bench(shape, backward, reps):
    inputs = make(*shape)
    run(selective_scan_chunked, inputs, backward)  # warm-up (allocator, threads)
    ref, new = [], []
    for _ in range(reps):
        ref.append(run(selective_scan_ref, inputs, backward))
        new.append(run(selective_scan_chunked, inputs, backward))
    return ref, new


def bench_temporal(reps: int, quick: bool) -> None:
    """ms per window of TemporalEncoder.forward (no grad), batch 8, tiny-cpu backbone tokens."""
    from model.config import get_preset
    from model.temporal import TemporalEncoder

    variants = [("tiny-cpu (stride 8)", {}), ("stride 16", dict(temporal_stride=16))]
    if not quick:
        variants += [("stride 8, d_state 8", dict(d_state=8)),
                     ("stride 8, d_state 8, expand 1", dict(d_state=8, expand=1))]
    print("\n# TemporalEncoder forward, batch 8 windows, no grad\n")
    print("| config | grid | T | dim | d_state | expand | ms / window (best) | ms / window (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, over in variants:
        cfg = get_preset("tiny-cpu", **over)
        torch.manual_seed(0)
        enc = TemporalEncoder(cfg, cfg.embed_dim).eval()
        feats = torch.randn(8, cfg.window, cfg.embed_dim, *cfg.patch_grid)
        times = []
        with torch.no_grad():
            enc(feats)
            for _ in range(reps):
                t0 = time.perf_counter()
                enc(feats)
                times.append((time.perf_counter() - t0) / 8 * 1000)
        th, tw = cfg.temporal_grid
        print(f"| {label} | {th}x{tw} | {cfg.window} | {cfg.temporal_dim} | {cfg.d_state} | {cfg.expand} | "
              f"{min(times):.1f} | {statistics.median(times):.1f} |", flush=True)


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
    print(f"# selective scan: reference loop vs chunked (torch {torch.__version__}, {args.threads} threads, "
          f"best of {reps})\n")
    print("| case | batch, dim, N, L | tiles (chunk, block) | ref s | chunked s | ratio (best) "
          "| ratio (median) |")
    print("|---|---|---|---|---|---|---|")
    for label, shape, backward in cases:
        ref, new = bench(shape, backward, reps)
        batch, dim, N, L = shape
        tiles = plan_tiles(batch, N * dim, L)
        print(f"| {label} | {batch}, {dim}, {N}, {L} | {tiles} | {min(ref):.3f} | {min(new):.4f} | "
              f"{min(ref) / min(new):.1f}x | {statistics.median(ref) / statistics.median(new):.1f}x |",
              flush=True)
    if args.temporal:
        bench_temporal(max(reps, 3), args.quick)
    print(f"\ncommand: `{cmd}`")


if __name__ == "__main__":
    main()
