"""What finding people costs per frame: decode, hog detection (batched vs one frame per call), nanodet
detection (when its package is there), tracking.

Frames come from a real clip (default ../shared/data/videos/street_walk.mp4), looped to --frames.
Reported in one run, so the ratios compare like with like on this machine:
  - hog frames/s with `--batch` frames per detect call (frames of a batch run on `--threads`
    threads) vs one frame per call on one thread;
  - tracker ms/frame on the hog detections;
  - detection + tracking time relative to decoding the same frames.

    python bench/people_bench.py --frames 40 --batch 8 --threads 2
    python bench/people_bench.py --e2e     # + end-to-end frames/s, default pipeline vs hog + tiny-cpu
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service import detectors  # noqa: E402
from service.settings import Settings  # noqa: E402
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


def e2e(clip: Path, frames: int, rounds: int) -> None:
    """End-to-end frames/s of two whole pipelines in one run: the previous default (hog + the
    vidpose-tiny-cpu model) and today's (VIDPOSE_DETECTOR=auto + the default model). Each is the
    real stack of `vidpose serve` (embedded redis, API, one worker); a `frames`-frame mp4v clip
    looped from `clip` is submitted with no options (the server's default detector), polled until
    it succeeds, and its result fetched; rounds alternate between the two stacks."""
    import json
    import os
    import tempfile

    import httpx

    from service.settings import get_settings
    from service.stack import Stack

    work = Path(tempfile.mkdtemp(prefix="vidpose-people-e2e-"))
    os.environ.update({"VIDPOSE_BLOB_DIR": str(work / "blobs"), "VIDPOSE_LOG_LEVEL": "warning",
                       "VIDPOSE_MAX_QUEUED_FRAMES": str(10**9)})
    get_settings.cache_clear()
    imgs, _ = decode(clip, frames)
    path = work / f"{clip.stem}_{frames}.mp4"
    h, w = imgs[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    for f in imgs:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()

    def run_job(url: str) -> tuple[float, int, int]:
        with httpx.Client(base_url=url, timeout=300) as c:
            t0 = time.perf_counter()
            with open(path, "rb") as fh:
                r = c.post("/estimate", files={"video": (path.name, fh, "video/mp4")})
            assert r.status_code == 202, r.text
            job = r.json()["job_id"]
            while (j := c.get(f"/jobs/{job}").json())["status"] in ("queued", "running"):
                time.sleep(0.05)
            assert j["status"] == "succeeded", json.dumps(j)
            got, people, start = 0, 0, 0
            while start is not None:
                page = c.get(f"/jobs/{job}/result", params={"start_frame": start}).json()
                got += len(page["frames"])
                people += sum(len(f["instances"]) for f in page["frames"])
                start = page["next_start_frame"]
            return time.perf_counter() - t0, got, people

    off = {"VIDPOSE_WORKER_METRICS_PORT": "0"}  # two stacks at once: no metrics port to share
    setups = {"hog + vidpose-tiny-cpu (before)": ("vidpose-tiny-cpu", {"VIDPOSE_DETECTOR": "hog", **off}),
              "default detector + default model (now)": (None, {"VIDPOSE_DETECTOR": "auto", **off})}
    stacks = {}
    try:
        for name, (model, env) in setups.items():
            stacks[name] = Stack(model, "127.0.0.1", 0, drain_timeout=5, extra_env=env, quiet=True).start()
        for name, st in stacks.items():
            st.wait_ready(300)
            with httpx.Client(base_url=st.url, timeout=30) as c:
                det = c.get("/detectors").json()["default_detector"]
            run_job(st.url)  # warm-up: first job, first detector and model calls
            print(f"{name}: model {st.name}, detector {det}")
        results = {name: [] for name in stacks}
        for _ in range(rounds):
            for name, st in stacks.items():
                results[name].append(run_job(st.url))
    finally:
        for st in stacks.values():
            st.stop()
    fps = {}
    for name, rs in results.items():
        secs = sorted(r[0] for r in rs)
        n, people = rs[0][1], rs[0][2]
        fps[name] = n / secs[len(secs) // 2]
        print(f"e2e {name}: {fps[name]:6.2f} frames/s (median of {len(rs)} jobs of {n} frames, "
              f"{people / n:.1f} posed people/frame)")
    a, b = fps.values()
    print(f"ratio now / before (end-to-end frames/s): {b / a:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=REPO.parent / "shared/data/videos/street_walk.mp4")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8, help="frames per detect call (VIDPOSE_DETECTOR_BATCH)")
    ap.add_argument("--threads", type=int, default=2, help="hog threads for batched calls; nanodet's "
                    "onnxruntime threads")
    ap.add_argument("--nanodet-size", type=lambda v: [int(x) for x in v.split(",")],
                    default=[DetectorConfig.nanodet_input_size],
                    help="nanodet input, longer side; several (416,640): one row each, same run")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="nanodet device")
    ap.add_argument("--e2e", action="store_true", help="also the end-to-end frames/s of the whole default "
                    "pipeline vs the previous one (hog + vidpose-tiny-cpu), through the real stack")
    ap.add_argument("--e2e-frames", type=int, default=40, help="frames per end-to-end job")
    ap.add_argument("--e2e-rounds", type=int, default=3, help="end-to-end jobs per pipeline (median)")
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
    if detectors.unavailable("nanodet", Settings()) is None:  # the built-in default, same frames, same run
        for size in args.nanodet_size:
            t0 = time.perf_counter()
            nano = make_detector("nanodet", DetectorConfig(threads=args.threads, device=args.device,
                                                           nanodet_input_size=size))
            t_load = time.perf_counter() - t0
            detect_all(nano, frames[: args.batch], args.batch)  # warm-up
            dets_n, t_nano = detect_all(nano, frames, args.batch)
            print(f"nanodet {size}, {args.batch} frames/call: {n / t_nano:8.1f} frames/s  ({nano.runtime}, "
                  f"{args.threads} threads; load + convert {t_load:.1f} s; "
                  f"{sum(len([d for d in ds if d.score >= 0.33]) for ds in dets_n) / n:.1f} "
                  "detections/frame >= 0.33)")
            print(f"ratio nanodet {size}/hog throughput ({args.batch} frames/call): "
                  f"{t_batched / t_nano:.2f}x")
    print(f"tracker:               {1000 * t_track / n:8.2f} ms/frame")
    print(f"ratio batched/single hog throughput: {t_single / t_batched:.2f}x")
    print(f"ratio (hog batched + tracker) / decode time: {(t_batched + t_track) / t_decode:.1f}x")
    if args.e2e:
        e2e(args.clip, args.e2e_frames, args.e2e_rounds)


if __name__ == "__main__":
    main()
