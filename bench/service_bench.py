"""End-to-end service throughput vs the bare model loop, measured in one run.

    python bench/service_bench.py --clips 8 --concurrency 4

Starts the real stack (embedded redis-server, uvicorn API, one worker: the
same processes as `vidpose serve`), submits N clips over HTTP with C concurrent
clients (each: POST /estimate, poll GET /jobs/{id}, fetch every result page),
and reports end-to-end frames/s. In the same run, the bare model loop does the
same work on the same clips in this process with no service: decode (OpenCV),
full-frame boxes, crops, encode_frames once per (frame, track), decode_windows
in batches of worker_max_batch, keypoints to image pixels. Prints both and
their ratio (service / bare); the issue's floor is 0.8 on 2 CPU cores.

The model is a checkpoint (--model PATH) or, by default, random weights of a
preset (--preset tiny-cpu): speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("VIDPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))


def make_clips(n: int, frames: int, workdir: Path) -> list[Path]:
    """N clips: the two sample clips alternately, or F-frame mp4v clips made from their frames."""
    import cv2

    samples = [SHARED / "videos" / "street_walk.mp4", SHARED / "videos" / "soccer.mp4"]
    for s in samples:
        if not s.is_file():
            raise SystemExit(f"sample clip missing: {s} (set VIDPOSE_SHARED_DATA)")
    if frames <= 0:
        return [samples[i % 2] for i in range(n)]
    out = []
    for k, src in enumerate(samples):
        cap = cv2.VideoCapture(str(src))
        imgs = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            imgs.append(f)
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        cap.release()
        path = workdir / f"clip{k}_{frames}.mp4"
        h, w = imgs[0].shape[:2]
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        for i in range(frames):
            vw.write(imgs[i % len(imgs)])
        vw.release()
        out.append(path)
    return [out[i % 2] for i in range(n)]


def make_model(args, workdir: Path) -> Path:
    if args.model:
        return Path(args.model).resolve()
    import importlib.util

    import torch

    from model.checkpoint import save_checkpoint
    from model.config import get_preset
    from model.pose_model import PoseModel

    torch.manual_seed(0)
    cfg = get_preset(args.preset)
    if cfg.temporal and importlib.util.find_spec("model.temporal") is None:
        print("note: model/temporal.py is not in this checkout: benchmarking without the temporal encoder")
        cfg = cfg.replace(temporal=False)
    path = workdir / "models" / f"bench-{args.preset}.safetensors"
    save_checkpoint(PoseModel(cfg), path, info={"version": f"bench-{args.preset}"})
    return path


def bare_clip(engine, clip: Path, max_batch: int) -> int:
    """One clip through decode -> crops -> windows -> encode/decode -> image keypoints; returns frames."""
    from service.worker.boxes import full_frame_boxes
    from service.worker.pipeline import run_windows, to_instance
    from service.worker.video import VideoReader
    from service.worker.windows import WindowBuilder

    results: dict[int, list] = {}
    with VideoReader(clip) as reader:
        w, h = reader.info.width, reader.info.height
        builder = WindowBuilder("bare", engine.window, engine.input_spec, recrop=engine.recrop_drop > 0)
        pending: list = []

        def run(batch):
            kps = run_windows(engine, batch, max_encode=max(max_batch, 8))
            for win, k in zip(batch, kps, strict=True):
                results.setdefault(win.key_frame, []).append(to_instance(win, k, engine, w, h))
                builder.release(win)

        for fr in reader:
            pending += builder.add_frame(fr.index, fr.rgb, full_frame_boxes(fr.index, fr.rgb))
            while len(pending) >= max_batch:
                run(pending[:max_batch])
                pending = pending[max_batch:]
        pending += builder.finish()
        while pending:
            run(pending[:max_batch])
            pending = pending[max_batch:]
        n = reader.frames_read
    assert len(results) == n
    return n


def bare_loop(engine, clips: list[Path], max_batch: int) -> tuple[int, float]:
    """The same per-clip work as a worker, sequentially, no service. Returns (frames, seconds)."""
    t0 = time.perf_counter()
    frames = sum(bare_clip(engine, clip, max_batch) for clip in clips)
    return frames, time.perf_counter() - t0


def service_run(url: str, clips: list[Path], concurrency: int, poll_s: float = 0.1
                ) -> tuple[int, float, list[float]]:
    """Submit every clip with `concurrency` clients; (frames, wall seconds, per-job latencies)."""
    import httpx

    todo = list(enumerate(clips))
    lock = threading.Lock()
    frames, latencies, errors = [0], [], []

    def client():
        with httpx.Client(base_url=url, timeout=120) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    _, clip = todo.pop(0)
                t = time.perf_counter()
                with open(clip, "rb") as f:
                    # full-frame boxes: the bare loop it is compared with has no detector either
                    r = c.post("/estimate", files={"video": (clip.name, f, "video/mp4")},
                               data={"options": json.dumps({"detector": "full-frame"})})
                if r.status_code != 202:
                    errors.append(r.text)
                    return
                job = r.json()["job_id"]
                while (j := c.get(f"/jobs/{job}").json())["status"] in ("queued", "running"):
                    time.sleep(poll_s)
                if j["status"] != "succeeded":
                    errors.append(json.dumps(j))
                    return
                got, start = 0, 0
                while start is not None:
                    page = c.get(f"/jobs/{job}/result", params={"start_frame": start}).json()
                    got += len(page["frames"])
                    start = page["next_start_frame"]
                with lock:
                    frames[0] += got
                    latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"service errors: {errors[:3]}")
    return frames[0], wall, latencies


def worker_batches(metrics_url: str) -> str:
    """Mean windows per batch and model time per stage, from the worker's /metrics (whole run)."""
    import re

    import httpx

    text = httpx.get(metrics_url, timeout=10).text

    def value(name, **labels):
        total = 0.0
        for line in text.splitlines():
            m = re.match(r"^(\w+)(\{[^}]*\})?\s+(\S+)$", line)
            tags = m.group(2) or "" if m else ""
            if m and m.group(1) == name and all(f'{k}="{v}"' in tags for k, v in labels.items()):
                total += float(m.group(3))
        return total

    n = value("vidpose_batch_size_count")
    enc = value("vidpose_model_forward_seconds_sum", stage="encode")
    dec = value("vidpose_model_forward_seconds_sum", stage="decode")
    return (f"{n:.0f} batches, mean {value('vidpose_batch_size_sum') / max(n, 1):.1f} windows; "
            f"model time encode {enc:.1f} s + decode {dec:.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=16, help="clips to submit (N)")
    ap.add_argument("--concurrency", type=int, default=4, help="concurrent clients (C)")
    ap.add_argument("--frames", type=int, default=0,
                    help="frames per clip (0: the 5-frame sample clips as they are; F: F-frame clips made "
                    "from their frames)")
    ap.add_argument("--model", default=None,
                    help="checkpoint (.safetensors); default: random weights of --preset")
    ap.add_argument("--preset", default="tiny-cpu", help="preset for random weights (default tiny-cpu)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for the worker and the bare loop (default 0: the worker's automatic "
                    "choice, cores - 1)")
    ap.add_argument("--max-batch", type=int, default=16, help="worker_max_batch (the bare loop uses it too)")
    ap.add_argument("--max-wait-ms", type=float, default=20, help="worker_max_wait_ms")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between a client's status polls")
    ap.add_argument("--repeat", type=int, default=3, help="measured rounds (bare, then service, each round)")
    args = ap.parse_args()

    from service.embedded_redis import free_port

    workdir = Path(tempfile.mkdtemp(prefix="vidpose-bench-"))
    for k in [k for k in os.environ if k.startswith("VIDPOSE_")]:
        if k != "VIDPOSE_SHARED_DATA":
            del os.environ[k]
    model_path = make_model(args, workdir)
    clips = make_clips(args.clips, args.frames, workdir)
    os.environ.update({
        "VIDPOSE_BLOB_DIR": str(workdir / "blobs"), "VIDPOSE_WORKER_METRICS_PORT": str(free_port()),
        "VIDPOSE_WORKER_THREADS": str(args.threads), "VIDPOSE_WORKER_MAX_BATCH": str(args.max_batch),
        "VIDPOSE_WORKER_MAX_WAIT_MS": str(args.max_wait_ms), "VIDPOSE_WORKER_DEVICE": args.device,
        "VIDPOSE_MAX_QUEUED_FRAMES": str(10**9), "VIDPOSE_LOG_LEVEL": "warning",
    })

    import torch

    from service.stack import Stack
    from service.worker.engine import Engine
    from service.worker.worker import auto_threads

    args.threads = args.threads or auto_threads()
    os.environ["VIDPOSE_WORKER_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    engine = Engine.load(str(model_path), model_path.parent, args.device)
    engine.warmup(min(4, args.max_batch))
    print(f"model {engine.name} ({engine.cfg.name}: embed {engine.cfg.embed_dim}, depth {engine.cfg.depth}, "
          f"temporal {engine.cfg.temporal}, diffusion {engine.cfg.diffusion}) on {engine.device}, "
          f"torch threads {args.threads}, cores {os.cpu_count()}")
    print(f"{len(clips)} clips ({sum(1 for _ in clips)} jobs), concurrency {args.concurrency}, "
          f"max_batch {args.max_batch}, max_wait {args.max_wait_ms} ms")

    rounds = []
    with Stack(str(model_path), "127.0.0.1", 0, drain_timeout=5, quiet=True) as stack:
        stack.wait_ready(300)
        # Warm both paths on every distinct clip (first-call allocations and per-shape kernel setup in
        # the model, first upload and job in the service) outside the timing.
        distinct = list(dict.fromkeys(clips))
        bare_loop(engine, distinct, args.max_batch)
        service_run(stack.url, distinct, 1)
        for r in range(args.repeat):  # alternate, so drifting machine load hits both sides alike
            bare_frames, bare_s = bare_loop(engine, clips, args.max_batch)
            svc_frames, svc_s, lat = service_run(stack.url, clips, args.concurrency, args.poll)
            assert svc_frames == bare_frames, (svc_frames, bare_frames)
            bare_fps, svc_fps = bare_frames / bare_s, svc_frames / svc_s
            lat.sort()
            rounds.append(svc_fps / bare_fps)
            print(f"round {r + 1}: bare model loop {bare_frames} frames in {bare_s:6.2f} s = {bare_fps:7.2f} "
                  f"frames/s | service e2e {svc_frames} frames in {svc_s:6.2f} s = {svc_fps:7.2f} frames/s "
                  f"(job latency p50 {lat[len(lat) // 2]:.2f} s, max {lat[-1]:.2f} s) "
                  f"| ratio {rounds[-1]:.2f}", flush=True)
        batches = worker_batches(f"http://127.0.0.1:{stack.metrics_port}/metrics")
    rounds.sort()
    print(f"worker batches: {batches}")
    print(f"ratio service / bare (median of {len(rounds)} rounds) = {rounds[len(rounds) // 2]:.2f} "
          f"(min {rounds[0]:.2f}, max {rounds[-1]:.2f}; floor 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
