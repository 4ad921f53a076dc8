"""Pose keyframes/s on CPU: served checkpoints side by side, and MoveNet's original graph in onnxruntime.

    python bench/pose_bench.py --onnx /path/to/movenet-thunder.onnx --threads 1

One key frame = one person crop through the model as the worker runs it: `encode` once (per frame,
cached) + `decode` of its window + keypoints. Every model gets the same real person crops (the
PoseTrack18 and COCO sample people, from their ground-truth boxes, each model's own crop shape), in
the same process, in the same run, alternating rounds so that load from other processes hits all
alike. With --onnx, the original MoveNet graph (converted from the TFJS package by
tools/onnx_reference/make_onnx.sh) runs in onnxruntime on the very crops a movenet checkpoint of its
input size gets (uint8 RGB, as the graph wants), one crop per call (its batch dim is 1). With
--uncertainty S,K the first checkpoint also runs as a job asking for per-joint uncertainty decodes it:
S diffusion steps, K hypotheses, and their spread (keypoint_std). A model with the re-crop rule on
(recrop_drop > 0) also pays each crop's single-frame confidence, as the worker does; --recrop-twin runs
the first model with the rule off too (the re-crop itself, a second encode + decode, is paid only by
the windows where it fires: docs/benchmarks.md). Prints keyframes/s per model and the ratios to the
first checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("VIDPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))


def people(shared: Path) -> list[tuple[np.ndarray, list[float]]]:
    """(RGB image, COCO box) of every annotated person in the COCO and PoseTrack18 samples."""
    import cv2

    out = []
    for ann_file, root in ((shared / "coco" / "test_coco.json", shared / "coco"),
                           (shared / "posetrack18" / "annotations" / "test_posetrack18_val.json",
                            shared / "posetrack18")):
        doc = json.loads(ann_file.read_text())
        files = {im["id"]: im["file_name"] for im in doc["images"]}
        cache = {}
        for a in doc["annotations"]:
            if a.get("num_keypoints", 1) == 0 or a["bbox"][2] < 8:
                continue
            f = files[a["image_id"]]
            if f not in cache:
                cache[f] = cv2.imread(str(root / f))[:, :, ::-1]
            out.append((cache[f], a["bbox"]))
    return out


def crops_for(spec, persons) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB crops, normalised crops) for a backbone's input spec."""
    from model.heatmaps import box_to_center_size, crop_affine, warp_crop

    raw = []
    for image, box in persons:
        center, size = box_to_center_size(box, spec.size)
        raw.append(warp_crop(image, crop_affine(center, size, spec.size), spec.size))
    return np.stack(raw), np.stack([spec.normalize(c) for c in raw])


def engine_round(engine, crops: np.ndarray, batch: int, options=None) -> float:
    """Seconds for all crops: encode in batches, decode each crop's (static) window (with `options`,
    a DecodeOptions, as a job asking for them: the hypotheses' spread too)."""
    t0 = time.perf_counter()
    for i in range(0, len(crops), batch):
        feats = engine.encode(crops[i:i + batch])
        if engine.recrop_drop > 0:
            engine.confidence(feats)  # once per crop (pipeline.recrop_wanted)
        windows = feats[:, None].expand(-1, engine.window, *feats.shape[1:])
        engine.decode(windows, options, with_spread=options is not None)
    return time.perf_counter() - t0


def onnx_round(session, raw: np.ndarray) -> float:
    name = session.get_inputs()[0].name
    t0 = time.perf_counter()
    for crop in raw:
        session.run(None, {name: crop[None].astype(np.int32)})
    return time.perf_counter() - t0


def _steps_hypotheses(text: str) -> tuple[int, int]:
    """'S,K' -> (S, K), S >= 1 diffusion steps and K >= 2 hypotheses (a spread needs two)."""
    try:
        steps, k = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected S,K (two integers), got {text!r}") from None
    if steps < 1 or k < 2:
        raise argparse.ArgumentTypeError(f"need S >= 1 and K >= 2, got {text!r}")
    return steps, k


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vidpose-movenet-thunder", "vidpose-tiny-cpu"],
                    help="checkpoint names in service/models or paths (the first is the reference)")
    ap.add_argument("--onnx", action="append", default=[],
                    help="original MoveNet graph(s) as ONNX, run on the first movenet model's crops")
    ap.add_argument("--torch-twin", action="store_true",
                    help="also run the first model with its backbone in eager PyTorch "
                         "(VIDPOSE_WORKER_CPU_RUNTIME=torch)")
    ap.add_argument("--recrop-twin", action="store_true",
                    help="also run the first model with its re-crop rule off (recrop_drop 0)")
    ap.add_argument("--uncertainty", default=None, metavar="S,K", type=_steps_hypotheses,
                    help="also time the first checkpoint decoding S diffusion steps x K hypotheses + their "
                         "spread, as a job asking for keypoint_std does (the web page: 2,5)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="crops per encode call (the worker batches too)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2, help="crops = sample people x repeat")
    args = ap.parse_args()

    import torch

    from service.settings import PACKAGE_MODELS_DIR
    from service.worker.engine import DecodeOptions, Engine

    torch.set_num_threads(args.threads)
    persons = people(SHARED) * args.repeat
    runs: dict[str, tuple] = {}
    loads = [(name, name, "auto") for name in args.models]
    if args.torch_twin:
        loads.insert(1, (f"{args.models[0]} (PyTorch backbone)", args.models[0], "torch"))
    if args.recrop_twin:
        loads.insert(1, (f"{args.models[0]} (re-crop rule off)", args.models[0], "auto"))
    for key, name, runtime in loads:
        engine = Engine.load(name, PACKAGE_MODELS_DIR, device="cpu", cpu_runtime=runtime)
        if key.endswith("(re-crop rule off)"):
            engine.cfg = engine.cfg.replace(recrop_drop=0.0)
        raw, norm = crops_for(engine.input_spec, persons)
        engine.warmup()
        runs[key] = ("engine", engine, norm, raw, None)
        if args.uncertainty and key == args.models[0]:  # not the --torch-twin copy
            if not engine.cfg.diffusion:
                ap.error(f"--uncertainty: {name} has no diffusion head")
            steps, k = args.uncertainty
            runs[f"{name} (S={steps}, K={k} + keypoint_std)"] = ("engine", engine, norm, raw,
                                                                 DecodeOptions(steps, k))
    if args.onnx:
        import onnxruntime as ort

        from model.backbones import InputSpec

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        for path in args.onnx:
            sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            side = int(sess.get_inputs()[0].shape[1])  # NHWC, square
            # the same crops a movenet checkpoint of that size gets (same boxes, warp, size)
            raw, _ = crops_for(InputSpec((side, side), (127.5,) * 3, (127.5,) * 3), persons)
            onnx_round(sess, raw[:2])
            runs[f"onnxruntime:{Path(path).name}"] = ("onnx", sess, None, raw, None)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for key, (kind, obj, norm, raw, options) in runs.items():
            dt = engine_round(obj, norm, args.batch, options) if kind == "engine" else onnx_round(obj, raw)
            times[key].append(len(raw) / dt)
    load = os.getloadavg()[0]
    first = args.models[0]
    print(f"{len(persons)} real person crops, {args.threads} thread(s), {args.rounds} rounds, "
          f"load avg {load:.1f}")
    print(f"| model | crop | keyframes/s best | median | ratio to {first} (best) |")
    print("|---|---|---|---|---|")
    for key, (_, _, _, raw, _) in runs.items():
        best, med = max(times[key]), statistics.median(times[key])
        shape = "x".join(str(s) for s in raw.shape[1:3])
        print(f"| {key} | {shape} | {best:.1f} | {med:.1f} | {best / max(times[first]):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
