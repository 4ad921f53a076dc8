"""`vidpose` subcommands for models and data: synth, train, eval, export.

Import-light on purpose: handlers import numpy/cv2/torch only when they run.
"""

from __future__ import annotations

import argparse


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}") from None
    if w < 64 or h < 64 or w > 4096 or h > 4096:
        raise argparse.ArgumentTypeError("width and height must be in [64, 4096]")
    return w, h


def register(sub) -> None:
    """Add the training subcommands."""
    p = sub.add_parser("synth", help="generate a synthetic video pose dataset (PoseTrack18 format)",
                       description="Articulated people with occluders, motion blur and camera shake, written "
                                   "as JPEG frames + PoseTrack18 JSON + mp4 per clip, split into train/val.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--clips", type=int, default=50)
    p.add_argument("--frames", type=int, default=30, help="frames per clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=(320, 240), help="WxH (default 320x240)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of clips in the val split")
    p.add_argument("--backgrounds", default=None, help="folder of images to crop backgrounds from")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--max-people", type=int, default=4, choices=range(1, 5), metavar="{1..4}")
    p.add_argument("--layout", choices=("posetrack18", "coco"), default="posetrack18",
                   help="keypoint slots: PoseTrack18 (head_bottom/head_top, no ears) or COCO-17")
    p.add_argument("--occluded-unlabelled", action="store_true",
                   help="write hidden joints as (0,0,0) like PoseTrack (the `occluded` flags stay)")
    p.add_argument("--workers", type=int, default=1, help="processes (output is identical for any count)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("eval", help="score predictions: PoseTrack mAP (poseval) or COCO keypoint AP",
                       description="--gt DIR --pred DIR: PoseTrack mAP of per-video PoseTrack18 "
                                   "prediction files against ground truth (same file names). With --metric "
                                   "coco, --gt is a COCO keypoints JSON and --pred a COCO results JSON.")
    p.add_argument("--checkpoint", help="score a model: a vidpose .safetensors checkpoint (with --data)")
    p.add_argument("--data", action="append", default=[],
                   help="with --checkpoint: data spec(s) scored on their val split, e.g. synth:DIR, "
                        "posetrack:ANN:IMAGES, coco:ANN:IMAGES (repeatable)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--diffusion-steps", type=int, default=None,
                   help="with --checkpoint: DDIM steps S (0 = temporal head without diffusion)")
    p.add_argument("--hypotheses", type=int, default=None, help="with --checkpoint: diffusion hypotheses K")
    p.add_argument("--gt", help="ground truth: folder of per-video PoseTrack18 JSONs (or one JSON)")
    p.add_argument("--pred", help="predictions: folder with the same file names (or one JSON)")
    p.add_argument("--metric", choices=("posetrack", "coco"), default="posetrack")
    p.add_argument("--out", default=None, help="write the metrics as JSON here")
    p.set_defaults(func=_eval)
    _register_train_export(sub)
    from training import temporal_commands

    temporal_commands.register(sub)


def _synth(args) -> int:
    import sys

    from training.synth import SynthConfig, generate

    if args.clips < 1 or args.frames < 1:
        print("error: --clips and --frames must be >= 1", file=sys.stderr)
        return 2
    width, height = args.size
    cfg = SynthConfig(width=width, height=height, frames=args.frames, fps=args.fps,
                      max_people=args.max_people, layout=args.layout,
                      occluded_labels=not args.occluded_unlabelled)
    done = [0]

    def progress(name: str) -> None:
        done[0] += 1
        print(f"\r[synth] {done[0]}/{args.clips} {name}", end="", file=sys.stderr, flush=True)

    try:
        summary = generate(args.out, args.clips, cfg, seed=args.seed, val_fraction=args.val_fraction,
                           backgrounds=args.backgrounds, workers=max(1, args.workers), progress=progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    print(f"\n[synth] {summary['train']} train + {summary['val']} val clips x {args.frames} frames "
          f"in {summary['seconds']:.1f}s -> {args.out}", file=sys.stderr)
    return 0


def _register_train_export(sub) -> None:
    p = sub.add_parser("train", help="train a pose model (single machine, or multi-GPU with torchrun)",
                       description="Train from a preset or a YAML/TOML TrainConfig (training/config.py). "
                                   "Multi-GPU: torchrun --nproc_per_node N -m service.cli train ...")
    p.add_argument("--config", required=True, help="preset name (tiny-cpu, small, base, ...) or config file")
    p.add_argument("--data", action="append", default=None,
                   help="training data spec (repeatable): synth:DIR, posetrack:ANN:IMAGES, coco:ANN:IMAGES, "
                        "clips:DIR; overrides the config's train_data")
    p.add_argument("--val-data", action="append", default=None,
                   help="validation data spec (repeatable); default: the val split of --data")
    p.add_argument("--out", default=None, help="run directory (default from the config: runs/train)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--init", default=None, help="initial weights (.safetensors, e.g. from import-vitpose)")
    p.add_argument("--freeze-backbone", action=argparse.BooleanOptionalAction, default=None,
                   help="freeze the per-frame backbone (its head still trains)")
    p.add_argument("--freeze-single-frame", dest="freeze_backbone", action="store_const",
                   const="single-frame",
                   help="freeze the backbone and its single-frame head: only the temporal encoder and "
                        "diffusion head train (e.g. on an imported MoveNet)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a model config field, e.g. --set temporal=false (YAML value)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last step")
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("export", help="export a training run as a served checkpoint",
                       description="Write RUN_DIR's best (or last) model as the .safetensors file workers "
                                   "serve, with training data, metrics, version and git commit in its "
                                   "metadata. Copy it into the workers' models dir and restart them.")
    p.add_argument("run_dir", help="a `vidpose train` run directory, or a .safetensors file to re-export")
    p.add_argument("out", help="output .safetensors (name it <models_dir>/<model name>.safetensors)")
    p.add_argument("--which", choices=("best", "last"), default="best")
    p.add_argument("--description", default=None, help="free text stored in the checkpoint's info")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (halves the file)")
    p.add_argument("--diffusion-steps", type=int, default=None,
                   help="the served default S (0 = diffusion off unless a job asks for it)")
    p.add_argument("--hypotheses", type=int, default=None, help="the served default K")
    p.add_argument("--keep-score", type=float, default=None,
                   help="single_frame_keep_score: joints the single-frame branch scores >= this keep its "
                        "keypoint (pick it with `vidpose eval-temporal --sweep-keep-score` on training data)")
    p.add_argument("--recrop-drop", type=float, default=None,
                   help="recrop_drop: a key frame whose single-frame confidence falls below this x both "
                        "outermost neighbours' is decoded again from a crop at their mean box (0: off)")
    p.add_argument("--recrop-min-confidence", type=float, default=None,
                   help="recrop_min_confidence: the re-crop rule fires only where both neighbours' "
                        "confidences are at least this")
    p.set_defaults(func=_export)


def _train(args) -> int:
    import sys

    import yaml

    from training.config import TrainConfig

    try:
        tc = TrainConfig.load(args.config)
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
            tc.model_overrides[key] = yaml.safe_load(value)
        for field, value in (("train_data", args.data), ("out", args.out), ("steps", args.steps),
                             ("batch_size", args.batch_size), ("lr", args.lr), ("init_checkpoint", args.init),
                             ("freeze_backbone", args.freeze_backbone), ("device", args.device),
                             ("threads", args.threads)):
            if value is not None:
                setattr(tc, field, value)
        if args.val_data is not None:
            tc.val_data = args.val_data
        elif args.data is not None:
            tc.val_data = [d for d in args.data if d.split(":")[0] in ("synth", "clips")]
        if not tc.train_data:
            raise ValueError("no training data: pass --data or set train_data in the config")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from training.trainer import Trainer

    try:
        trainer = Trainer(tc, resume=args.resume, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics = trainer.train()
    print(f"[train] done at step {trainer.step}: {metrics} -> {tc.out}", file=sys.stderr)
    return 0


def _export(args) -> int:
    import sys

    from training.export import export_run

    try:
        extra = {"description": args.description} if args.description else None
        pairs = (("diffusion_steps", args.diffusion_steps), ("hypotheses", args.hypotheses),
                 ("single_frame_keep_score", args.keep_score), ("recrop_drop", args.recrop_drop),
                 ("recrop_min_confidence", args.recrop_min_confidence))
        decode = {k: v for k, v in pairs if v is not None}
        path = export_run(args.run_dir, args.out, which=args.which, extra_info=extra, fp16=args.fp16,
                          decode_defaults=decode)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {path}")
    return 0


def _eval(args) -> int:
    import sys

    if args.checkpoint:
        return _eval_checkpoint(args)
    if args.gt and args.pred:
        return _eval_files(args)
    print("error: give --checkpoint CK --data SPEC, or --gt and --pred (prediction files)", file=sys.stderr)
    return 2


def _eval_checkpoint(args) -> int:
    import json
    import sys

    if not args.data:
        print("error: --checkpoint needs --data SPEC", file=sys.stderr)
        return 2
    import torch

    from model.checkpoint import CheckpointError, load_checkpoint
    from training.evaluate.checkpoint_eval import evaluate_model
    from training.evaluate.posetrack_map import GROUPS

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    try:
        model, meta = load_checkpoint(args.checkpoint, map_location=device)
        results = [evaluate_model(model, spec, batch_size=args.batch_size, device=device,
                                  diffusion_steps=args.diffusion_steps, hypotheses=args.hypotheses,
                                  model_keypoints=meta.get("keypoints") or None)
                   for spec in args.data]
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cols = [*GROUPS, "Total"]
    for res in results:
        print(f"{res['data']}: {res['people']} people, PCK {res['pck']['pck']:.4f} "
              f"(single-frame branch {res['pck']['pck_base']:.4f})")
        for key, title in (("map", "PoseTrack mAP, all frames"),
                           ("map_occluded_frames", "PoseTrack mAP, frames with occluded joints")):
            if key in res:
                m = res[key]
                print(f"{title} ({m['num_frames']} frames)")
                print("| " + " | ".join(f"{c:>5}" for c in cols) + " |")
                vals = [m["groups"][c] for c in GROUPS] + [m["total"]]
                print("| " + " | ".join("  nan" if v is None else f"{v:5.1f}" for v in vals) + " |")
        if "coco_ap" in res:
            print("COCO AP " + "  ".join(f"{k} {v:.3f}" for k, v in res["coco_ap"].items()))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results if len(results) > 1 else results[0], fh, indent=1)
    return 0


def _eval_files(args) -> int:
    import json
    import sys

    try:
        if args.metric == "coco":
            from training.evaluate.coco_ap import coco_keypoint_ap

            stats = coco_keypoint_ap(args.gt, args.pred)
            print("  ".join(f"{k} {v:.3f}" for k, v in stats.items()))
            result = {"metric": "coco_keypoint_ap", **stats}
        else:
            from training.evaluate.posetrack_map import (
                evaluate_posetrack,
                has_occlusion_flags,
                load_posetrack_videos,
                occluded_frames,
            )

            gt, pred = load_posetrack_videos(args.gt), load_posetrack_videos(args.pred)
            res = evaluate_posetrack(gt, pred)
            print(res.table(f"PoseTrack mAP, all frames ({res.num_frames})"))
            result = res.to_dict()
            if has_occlusion_flags(gt):
                occ = evaluate_posetrack(gt, pred, frame_filter=occluded_frames)
                print(occ.table(f"PoseTrack mAP, frames with occluded joints ({occ.num_frames})"))
                result["occluded_frames"] = occ.to_dict()
    except (ValueError, FileNotFoundError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0
