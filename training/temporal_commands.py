"""`vidpose cache-features` and `vidpose eval-temporal`: the temporal-path recipe's two extra steps.

    vidpose estimate CLIP --out LABELS.json               the served single-frame model = the teacher
    vidpose cache-features CK CLIP LABELS.json OUT --split train|val
    vidpose train --config training/recipes/temporal-vtest.yaml
    vidpose eval-temporal RUN/best.safetensors OUT_VAL    PCK@0.1 vs the clean-frame teacher

See docs/training.md for the whole recipe and docs/results.md for what it measured.
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("cache-features", help="encode a clip's person crops once (clean + corrupted key "
                                              "frames) for temporal training on a frozen backbone",
                       description="Cut the service's crops of every tracked person in CLIP (boxes from a "
                                   "`vidpose estimate` result), encode them with CHECKPOINT's backbone, and "
                                   "each confident key frame also under corruptions "
                                   "(training/corruptions.py). "
                                   "Writes OUT/{meta.json,index.json,clean.npy,corrupt.npy}; use as "
                                   "features:OUT in `vidpose train` / `vidpose eval-temporal`.")
    p.add_argument("checkpoint", help="the single-frame model whose backbone is frozen (.safetensors)")
    p.add_argument("clip", help="the video")
    p.add_argument("labels", help="`vidpose estimate CLIP --out LABELS.json` output for the same clip")
    p.add_argument("out", help="cache folder")
    p.add_argument("--split", choices=("train", "val", "all"), default="train",
                   help="train: the first 1 - val_fraction of the frames; val: the rest (one fixed "
                        "corruption per key frame, kinds in turn); all: every frame")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--variants", type=int, default=2, help="corrupted copies per key frame (train/all)")
    p.add_argument("--kinds", default=None, metavar="K1,K2,...",
                   help="corruptions to draw from (default: the six of training/corruptions.py KINDS; "
                        "'cross' -- someone passing in front -- is an extra)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-score", type=float, default=0.3, help="teacher joints under this get weight 0")
    p.add_argument("--min-joints", type=int, default=8, help="key frames need this many confident joints")
    p.add_argument("--key-every", type=int, default=1, help="key frames: every N-th frame of the split")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cache)

    p = sub.add_parser("eval-temporal", help="PCK@0.1 of temporal vs single-frame on cached held-out windows",
                       description="Scores CHECKPOINT on a feature cache (train=False: every key frame clean "
                                   "and corrupted) against its own single-frame branch on the clean key "
                                   "frame: "
                                   "base (single-frame on the corrupted key) vs temporal with no diffusion, "
                                   "K=1 and K=--hypotheses; the hypotheses' spread on right vs wrong joints.")
    p.add_argument("checkpoint")
    p.add_argument("cache", nargs="+", help="feature cache folder(s) (vidpose cache-features --split val)")
    p.add_argument("--hypotheses", type=int, default=5)
    p.add_argument("--steps", type=int, default=1, help="DDIM steps for the diffusion settings")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--every", type=int, default=1, help="score every N-th key sample of each cache")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--drop", type=float, default=0.8,
                   help="natural occlusion: frames whose teacher confidence falls below DROP x that of the "
                        "frames 2 before and after (training/evaluate/natural_occlusion.py)")
    p.add_argument("--sweep-keep-score", action="store_true",
                   help="instead: PCK on clean/corrupted key frames for candidate single_frame_keep_score "
                        "values (run it on a training cache, not the held-out one)")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.set_defaults(func=_eval_temporal)


def _cache(args) -> int:
    from training.corruptions import KINDS
    from training.feature_cache import build_cache

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else KINDS
    try:
        info = build_cache(args.checkpoint, args.clip, args.labels, args.out, split=args.split,
                           variants=args.variants, kinds=kinds, seed=args.seed,
                           val_fraction=args.val_fraction, min_score=args.min_score,
                           min_joints=args.min_joints, key_every=args.key_every, threads=args.threads,
                           device=args.device)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[cache-features] {info['samples']} key samples, {info['crops']} clean + {info['corrupt_crops']} "
          f"corrupted crops -> {args.out}", file=sys.stderr)
    return 0


def _eval_temporal(args) -> int:
    import torch
    from torch.utils.data import ConcatDataset

    from model.checkpoint import load_checkpoint
    from training.datasets.features import CachedFeatureWindows
    from training.evaluate.temporal_eval import evaluate_windows, format_table

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint)
    cfg = model.cfg
    try:
        parts = [CachedFeatureWindows(c, cfg, train=False, sample_every=args.every) for c in args.cache]
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    # One list of kind names for all caches: each numbers its kinds by its own list (--kinds differs).
    data.kinds = list(dict.fromkeys(k for p in parts for k in p.kinds))
    for p in parts:
        p.kinds = data.kinds
    if args.sweep_keep_score:
        from training.evaluate.temporal_eval import keep_score_sweep

        grid = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 2.0]
        sweep = keep_score_sweep(model, data, grid, batch_size=args.batch_size)
        print("| single_frame_keep_score | clean | corrupted |\n|---|---|---|")
        for tau, row in sweep.items():
            nan = float("nan")
            print(f"| {tau} | {row.get('clean', nan):.1f} | {row.get('corrupted', nan):.1f} |")
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"checkpoint": args.checkpoint, "caches": args.cache, "sweep": sweep}, fh, indent=1)
        return 0
    settings = {"temporal": (0, 1)}
    if cfg.diffusion:
        settings.update({"temporal+diff K=1": (args.steps, 1),
                         f"temporal+diff K={args.hypotheses}": (args.steps, args.hypotheses)})
    from training.evaluate.natural_occlusion import evaluate_drops, target_agreement

    result = evaluate_windows(model, data, settings, batch_size=args.batch_size)
    print(format_table(result))
    result["natural_occlusion"] = {c: {**evaluate_drops(model, c, drop=args.drop),
                                       "target_ceiling": target_agreement(c, drop=args.drop)}
                                   for c in args.cache}
    for c, r in result["natural_occlusion"].items():
        ceiling = r["target_ceiling"]
        recrop = (f"; with the re-crop rule (fired on {r['recrop_fired']}): base {r['base+recrop']}, "
                  f"temporal {r['temporal+recrop']}" if "recrop_fired" in r else "")
        print(f"natural occlusion in {c} (teacher confidence < {args.drop} x frames t-2 and t+2): "
              f"{r['windows']} windows, {r['n_joints']} joints: base {r['base']}, temporal {r['temporal']}, "
              f"either {r['either']}{recrop}; the target's own ceiling (teacher at t on {ceiling['frames']} "
              f"frames without a drop) {ceiling['pck']}")
    if cfg.recrop_drop > 0:
        from training.evaluate.recrop import evaluate_key_samples, format_recrop

        result["recrop"] = {c: evaluate_key_samples(model, c, every=args.every) for c in args.cache}
        for c, r in result["recrop"].items():
            print(f"\nthe re-crop rule (recrop_drop {cfg.recrop_drop}) on the key samples of {c} "
                  "(no diffusion; the table above decodes without it):")
            print(format_recrop(r))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"checkpoint": args.checkpoint, "caches": args.cache, **result}, fh, indent=1)
    return 0
