"""What finding people costs per frame: decode, hog detection (batched vs one frame per call), tracking.

Frames come from a real clip (default ../shared/data/videos/street_walk.mp4), looped to --frames.
Reported in one run, so the ratios compare like with like on this machine:
  - hog frames/s with `--batch` frames per detect call (frames of a batch run on `--threads`
    threads) vs one frame per call on one thread;
  - tracker ms/frame on the hog detections;
  - detection + tracking time relative to decoding the same frames.

    python bench/people_bench.py --frames 40 --batch 8 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.worker.detect import DetectorConfig, make_detector  # noqa: E402
from service.worker.tracker import Tracker, TrackerConfig  # noqa: E402


def decode(path: Path, n: int) -> tuple[list, float]:
    """n RGB frames of the clip (looped) and the seconds decoding them took."""
    frames, t0 = [], time.perf_counter()
    while len(frames) < n:
        cap = cv2.VideoCapture(str(path))
        while len(frames) < n:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        cap.release()
    return frames, time.perf_counter() - t0


def detect_all(detector, frames: list, batch: int) -> tuple[list, float]:
    out, t0 = [], time.perf_counter()
    for i in range(0, len(frames), batch):
        out += detector.detect(frames[i:i + batch])
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=REPO.parent / "shared/data/videos/street_walk.mp4")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8, help="frames per detect call (VIDPOSE_DETECTOR_BATCH)")
    ap.add_argument("--threads", type=int, default=2, help="hog threads for batched calls")
    args = ap.parse_args()

    frames, t_decode = decode(args.clip, args.frames)
    n = len(frames)
    single = make_detector("hog", DetectorConfig(threads=1))
    batched = make_detector("hog", DetectorConfig(threads=args.threads))
    detect_all(batched, frames[: args.batch], args.batch)  # warm-up
    dets_1, t_single = detect_all(single, frames, 1)
    dets_b, t_batched = detect_all(batched, frames, args.batch)
    assert [len(d) for d in dets_1] == [len(d) for d in dets_b], "batching changed the detections"
    tracker = Tracker(TrackerConfig())
    t0 = time.perf_counter()
    tracks = [tracker.update(d) for d in dets_b]
    t_track = time.perf_counter() - t0
    h, w = frames[0].shape[:2]
    print(f"clip {args.clip.name} {w}x{h}, {n} frames, {sum(map(len, dets_b)) / n:.1f} detections/frame, "
          f"{sum(map(len, tracks)) / n:.1f} tracked people/frame")
    print(f"decode:                {n / t_decode:8.1f} frames/s")
    print(f"hog, 1 frame/call:     {n / t_single:8.1f} frames/s  (1 thread)")
    print(f"hog, {args.batch} frames/call:    {n / t_batched:8.1f} frames/s  ({args.threads} threads)")
    print(f"tracker:               {1000 * t_track / n:8.2f} ms/frame")
    print(f"ratio batched/single hog throughput: {t_single / t_batched:.2f}x")
    print(f"ratio (hog batched + tracker) / decode time: {(t_batched + t_track) / t_decode:.1f}x")


if __name__ == "__main__":
    main()
