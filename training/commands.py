"""`vidpose` subcommands for models and data: synth, eval (train, export come with the trainer).

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
    p.add_argument("--gt", help="ground truth: folder of per-video PoseTrack18 JSONs (or one JSON)")
    p.add_argument("--pred", help="predictions: folder with the same file names (or one JSON)")
    p.add_argument("--metric", choices=("posetrack", "coco"), default="posetrack")
    p.add_argument("--out", default=None, help="write the metrics as JSON here")
    p.set_defaults(func=_eval)


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


def _eval(args) -> int:
    if args.gt and args.pred:
        return _eval_files(args)
    import sys

    print("error: give --gt and --pred (prediction files)", file=sys.stderr)
    return 2


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
