"""`vidpose render RESULT.json CLIP OUT.mp4`: the overlay video of a result, offline."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("render", help="draw a result's skeletons on its clip -> H.264 mp4",
                       description="Draw the poses of RESULT.json (the native JSON of GET /jobs/{id}/result, "
                       "or what `vidpose estimate` saved) on every frame of CLIP and write an H.264 mp4. "
                       "Exit status: 0 success, 2 bad input (missing file, bad JSON, wrong clip).")
    p.add_argument("result", help="result JSON (native format)")
    p.add_argument("clip", help="the video the job processed")
    p.add_argument("out", help="output .mp4")
    p.add_argument("--min-score", type=float, default=None,
                   help="hide keypoints (and their limbs) scoring below this "
                   "(default: VIDPOSE_OVERLAY_MIN_SCORE or 0.3)")
    p.set_defaults(func=run_render)


def run_render(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.render.overlay import RenderError, load_result, missing_frames, render_overlay
    from service.settings import get_settings

    min_score = args.min_score if args.min_score is not None else get_settings().overlay_min_score
    if not 0 <= min_score <= 1:
        print(f"error: --min-score must be in [0, 1], got {min_score}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"error: output folder does not exist: {out.parent}", file=sys.stderr)
        return 2
    try:
        result = load_result(args.result)
        missing = missing_frames(result)
        if missing:
            nxt = result.get("next_start_frame")
            hint = f" (one page: next_start_frame={nxt}; `vidpose estimate` saves every page)" if nxt else ""
            print(f"warning: {args.result} has no poses for {len(missing)} of {result['video']['frames']} "
                  f"frames{hint}; those frames are drawn without skeletons", file=sys.stderr)
        n = render_overlay(result, Path(args.clip), out, min_score=min_score)
    except RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({n} frames)")
    return 0
