"""PoseTrack18/21-format video datasets (also the synthetic set and users' clips).

Format (one JSON per video, or one COCO-style JSON holding several videos):
images[] {id, file_name (relative to the image root), frame_id, vid_id, nframes,
is_labeled, ignore_regions_x/y}, annotations[] {image_id, track_id, bbox xywh,
bbox_head xywh, keypoints 17x(x, y, v), optional `occluded` 17 flags (vidpose
synthetic data)}, categories[0].keypoints = the slot names (see layouts.py).

A sample = one labelled person in one labelled frame. Its window is the frames
numbered n - T//2 .. n + T//2 of the same video, clamped to [0, nframes - 1];
a neighbour whose image file does not exist is replaced by the nearest existing
frame towards the key frame. Neighbours may be unlabelled: each frame is
cropped with the same track's box in that frame when that frame labels the
track, else with the key frame's box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.config import PoseModelConfig
from training.datasets.base import WindowDataset, WindowSample, box_from_keypoints
from training.datasets.format import ignore_regions
from training.datasets.layouts import KeypointLayout, layout_from_names, same_layout
from training.transforms import AugmentConfig


@dataclass
class PersonAnnotation:
    track_id: int
    box: np.ndarray | None  # xywh
    keypoints: np.ndarray  # (K, 3)
    head_box: np.ndarray | None
    occluded: np.ndarray | None
    ann_id: int = 0

    @property
    def num_labelled(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass
class FrameAnnotation:
    image_id: int
    file_name: str
    number: int  # frame number within the video (0-based)
    labelled: bool
    frame_id: int = 0
    ignore_regions: list[np.ndarray] = field(default_factory=list)  # polygons (n, 2)
    people: dict[int, PersonAnnotation] = field(default_factory=dict)  # by track id


@dataclass
class VideoAnnotation:
    name: str
    nframes: int
    layout: KeypointLayout
    frames: dict[int, FrameAnnotation]  # by frame number
    source: str = ""


def _frame_number(file_name: str, fallback: int) -> int:
    stem = Path(file_name).stem
    return int(stem) if stem.isdigit() else fallback


def _array(value, n):
    if value is None or len(value) != n:
        return None
    return np.asarray(value, dtype=np.float64)


def parse_posetrack(data: dict, source: str = "") -> list[VideoAnnotation]:
    """A PoseTrack18-format dict -> its videos (one per video folder)."""
    cats = data.get("categories") or []
    if len(cats) != 1 or "keypoints" not in cats[0]:
        raise ValueError(f"{source}: expected one 'person' category with keypoint names")
    layout = layout_from_names(cats[0]["keypoints"])
    k = layout.num_keypoints
    images = sorted(data.get("images", []), key=lambda im: im["id"])
    by_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        by_image.setdefault(ann["image_id"], []).append(ann)

    videos: dict[str, VideoAnnotation] = {}
    for pos, im in enumerate(images):
        name = Path(im["file_name"]).parent.name or str(im.get("vid_id", "video"))
        video = videos.get(name)
        if video is None:
            video = videos[name] = VideoAnnotation(name, int(im.get("nframes", 0)), layout, {}, source)
        number = _frame_number(im["file_name"], pos)
        regions = ignore_regions(im)
        anns = by_image.get(im["id"], [])
        frame = FrameAnnotation(im["id"], im["file_name"], number,
                                labelled=bool(im.get("is_labeled", bool(anns))),
                                frame_id=int(im.get("frame_id", im["id"])), ignore_regions=regions)
        for j, ann in enumerate(anns):
            kps = np.asarray(ann.get("keypoints") or [0] * (3 * k), dtype=np.float64).reshape(k, 3)
            box = _array(ann.get("bbox"), 4)
            if box is not None and (box[2] <= 1 or box[3] <= 1):
                box = None
            track = int(ann.get("track_id", j))
            frame.people[track] = PersonAnnotation(
                track_id=track, box=box, keypoints=kps, head_box=_array(ann.get("bbox_head"), 4),
                occluded=_array(ann.get("occluded"), k), ann_id=int(ann.get("id", 0)))
        video.frames[number] = frame
    for video in videos.values():
        video.nframes = max(video.nframes, max(video.frames) + 1)
    return list(videos.values())


def load_posetrack(paths) -> list[VideoAnnotation]:
    """JSON files and/or directories of JSON files -> videos (sorted by file name)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    if not files:
        raise FileNotFoundError(f"no PoseTrack JSON files in {list(map(str, paths))}")
    videos = []
    for f in files:
        with open(f) as fh:
            videos.extend(parse_posetrack(json.load(fh), source=str(f)))
    return videos


class PoseTrackDataset(WindowDataset):
    """Windows around every labelled person of PoseTrack-format videos.

    annotations: a JSON file, a directory of per-video JSONs, or a list of them.
    image_root: folder the JSON `file_name`s are relative to (a list = search
    order, first existing file wins). min_keypoints: people with fewer labelled
    joints are skipped (they give no training signal and cannot be scored).
    """

    def __init__(self, annotations, image_root, cfg: PoseModelConfig, train: bool, sigma: float = 3.0,
                 augment: AugmentConfig | None = None, seed: int | None = None, min_keypoints: int = 1,
                 cache_mb: int = 128):
        super().__init__(cfg, train, sigma, augment, seed, cache_mb)
        roots = [image_root] if isinstance(image_root, (str, Path)) else list(image_root)
        self.image_roots = [Path(r) for r in roots]
        self.videos = load_posetrack(annotations)
        self.layout = same_layout(v.layout for v in self.videos)
        if self.layout.num_keypoints != cfg.num_keypoints:
            raise ValueError(f"data has {self.layout.num_keypoints} keypoints, model {cfg.num_keypoints}")
        self._exists: dict[str, Path | None] = {}
        for video in self.videos:
            self._index_video(video, min_keypoints)

    # -- files
    def resolve(self, file_name: str) -> Path | None:
        """The first image root holding `file_name`, or None."""
        hit = self._exists.get(file_name, False)
        if hit is False:
            hit = next((r / file_name for r in self.image_roots if (r / file_name).is_file()), None)
            self._exists[file_name] = hit
        return hit

    @staticmethod
    def _neighbour_name(key: FrameAnnotation, number: int) -> str:
        p = Path(key.file_name)
        width = len(p.stem) if p.stem.isdigit() else 6
        return str(p.with_name(f"{number:0{width}d}{p.suffix}"))

    def _frame_file(self, video: VideoAnnotation, key: FrameAnnotation, number: int) -> tuple[int, Path]:
        """Frame `number` (clamped) or the nearest existing frame towards the key frame."""
        number = min(max(number, 0), video.nframes - 1)
        step = 1 if number < key.number else -1
        while True:
            frame = video.frames.get(number)
            name = frame.file_name if frame is not None else self._neighbour_name(key, number)
            path = self.resolve(name)
            if path is not None:
                return number, path
            if number == key.number:
                raise FileNotFoundError(f"{video.source}: key frame image {key.file_name} not found "
                                        f"under {[str(r) for r in self.image_roots]}")
            number += step

    # -- samples
    def _index_video(self, video: VideoAnnotation, min_keypoints: int) -> None:
        t = self.cfg.window
        half = t // 2
        for number in sorted(video.frames):
            key = video.frames[number]
            if not key.labelled:
                continue
            for track, person in key.people.items():
                if person.num_labelled < max(min_keypoints, 1):
                    continue
                key_box = person.box if person.box is not None else box_from_keypoints(person.keypoints)
                paths, boxes, numbers = [], [], []
                for offset in range(-half, t - half):
                    n, path = self._frame_file(video, key, number + offset)
                    other = video.frames.get(n)
                    neighbour = other.people.get(track) if other is not None and other.labelled else None
                    box = neighbour.box if neighbour is not None and neighbour.box is not None else key_box
                    paths.append(path)
                    boxes.append(box)
                    numbers.append(n)
                self.samples.append(WindowSample(
                    paths=paths, boxes=np.asarray(boxes, dtype=np.float64), keypoints=person.keypoints,
                    window_indices=numbers, image_id=key.image_id, frame_id=key.frame_id, track_id=track,
                    video=video.name, file_name=key.file_name, head_box=person.head_box,
                    occluded=person.occluded))
