"""Write synthetic clips as a PoseTrack18-format dataset.

    OUT/images/{train,val}/NNNNNN_synth/000000.jpg ...   JPEG frames
    OUT/annotations/{train,val}/NNNNNN_synth.json        PoseTrack18 JSON (file_name relative to OUT)
    OUT/videos/{train,val}/NNNNNN_synth.mp4              the same frames as an mp4 (MPEG-4 Part 2, mp4v)
    OUT/synth.json                                      the generator settings

Clip k is drawn from numpy's SeedSequence([seed, k]), so a clip does not
depend on how many clips are made or on the number of worker processes; the
last round(N * val_fraction) clips form the val split.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from model.keypoints import COCO_SKELETON
from training.datasets.layouts import LAYOUTS
from training.synth.clip import Clip, SynthConfig, make_clip

GENERATOR_VERSION = 1


def clip_name(index: int) -> str:
    return f"{index:06d}_synth"  # digits first, as PoseTrack18 names videos (poseval reads them)


def _image_id(index: int, frame: int) -> int:
    return 10_000_000_000 + index * 10_000 + frame  # PoseTrack style: 1 + video id + frame number


def _r(values) -> list[float]:
    return [round(float(v), 2) for v in np.asarray(values).reshape(-1)]


def clip_json(clip: Clip, index: int, split: str, cfg: SynthConfig, seed: int) -> dict:
    name = clip_name(index)
    layout = LAYOUTS[cfg.layout]
    images, annotations = [], []
    for f, people in enumerate(clip.labels):
        image_id = _image_id(index, f)
        images.append({
            "id": image_id, "file_name": f"images/{split}/{name}/{f:06d}.jpg", "frame_id": image_id,
            "vid_id": f"{index:06d}", "nframes": len(clip.frames), "is_labeled": True,
            "has_no_densepose": True, "width": cfg.width, "height": cfg.height,
            "ignore_regions_x": [], "ignore_regions_y": [],
        })
        for p in people:
            annotations.append({
                "id": image_id * 100 + p.track_id, "image_id": image_id, "track_id": p.track_id,
                "category_id": 1, "bbox": _r(p.box), "bbox_head": _r(p.head_box),
                "keypoints": _r(p.keypoints), "num_keypoints": int((p.keypoints[:, 2] > 0).sum()),
                "occluded": [int(v) for v in p.occluded], "scores": [], "iscrowd": False,
            })
    return {
        "info": {"generator": "vidpose synth", "version": GENERATOR_VERSION, "seed": seed, "clip": index,
                 "fps": cfg.fps, **clip.info},
        "images": images,
        "annotations": annotations,
        "categories": [{"supercategory": "person", "id": 1, "name": "person",
                        "keypoints": list(layout.keypoints),
                        "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}],
    }


def write_clip(out: Path, clip: Clip, index: int, split: str, cfg: SynthConfig, seed: int) -> None:
    name = clip_name(index)
    img_dir = out / "images" / split / name
    img_dir.mkdir(parents=True, exist_ok=True)
    for f, frame in enumerate(clip.frames):
        cv2.imwrite(str(img_dir / f"{f:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    ann_dir = out / "annotations" / split
    ann_dir.mkdir(parents=True, exist_ok=True)
    with open(ann_dir / f"{name}.json", "w") as fh:
        json.dump(clip_json(clip, index, split, cfg, seed), fh)
    vid_dir = out / "videos" / split
    vid_dir.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(vid_dir / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps,
                             (cfg.width, cfg.height))
    if not writer.isOpened():
        raise OSError("OpenCV cannot write mp4v video here")
    for frame in clip.frames:
        writer.write(frame)
    writer.release()


def load_backgrounds(folder) -> list[np.ndarray]:
    """Images (jpg/png/bmp/webp) of a folder, as BGR arrays, for background crops."""
    if folder is None:
        return []
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png",
                                                                             ".bmp", ".webp"))
    images = [im for im in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths) if im is not None]
    if not images:
        raise FileNotFoundError(f"no readable images in {folder}")
    return images


def _one(job) -> str:
    out, index, split, cfg, seed, backgrounds = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    write_clip(Path(out), make_clip(rng, cfg, backgrounds), index, split, cfg, seed)
    return clip_name(index)


def generate(out, clips: int, cfg: SynthConfig, seed: int = 0, val_fraction: float = 0.2,
             backgrounds=None, workers: int = 1, progress=None) -> dict:
    """Make `clips` clips under `out`; returns a summary (counts, seconds)."""
    if clips < 1:
        raise ValueError("clips must be >= 1")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bgs = load_backgrounds(backgrounds)
    n_val = int(round(clips * val_fraction))
    jobs = [(str(out), k, "val" if k >= clips - n_val else "train", cfg, seed, bgs) for k in range(clips)]
    start = time.perf_counter()
    if workers > 1:
        # spawn, not fork: a forked child of a process that already ran OpenCV/FFmpeg or torch
        # threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=cv2.setNumThreads,
                                 initargs=(1,)) as pool:
            for name in pool.map(_one, jobs):
                if progress:
                    progress(name)
    else:
        for job in jobs:
            name = _one(job)
            if progress:
                progress(name)
    summary = {"clips": clips, "train": clips - n_val, "val": n_val, "frames_per_clip": cfg.frames,
               "seed": seed, "seconds": round(time.perf_counter() - start, 2),
               "config": dataclasses.asdict(cfg), "backgrounds": str(backgrounds) if backgrounds else None,
               "version": GENERATOR_VERSION}
    with open(out / "synth.json", "w") as fh:
        json.dump({k: v for k, v in summary.items() if k != "seconds"}, fh, indent=1, sort_keys=True)
    return summary
