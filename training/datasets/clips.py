"""A directory of the user's own clips with PoseTrack-format labels (layout: docs/data.md).

    ROOT/annotations[/SPLIT]/<clip>.json     PoseTrack18 format, file_name relative to ROOT
    ROOT/images[/SPLIT]/<clip>/000000.jpg    frames, 0-based numbers (or ...)
    ROOT/videos[/SPLIT]/<clip>.mp4           ... the clip itself: frame N = file name N

Frames that are not on disk are decoded from the clip's video once, into
`frames_cache` (default ROOT/.frames), under the same relative names.
"""

from __future__ import annotations

from pathlib import Path

from model.config import PoseModelConfig
from training.datasets.posetrack import PoseTrackDataset, VideoAnnotation, load_posetrack

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def find_video(root: Path, split: str | None, names) -> Path | None:
    folders = [root / "videos" / split, root / "videos"] if split else [root / "videos"]
    for folder in folders:
        for name in names:
            for ext in VIDEO_EXTS:
                if (folder / f"{name}{ext}").is_file():
                    return folder / f"{name}{ext}"
    return None


def extract_frames(video_path: Path, out_dir: Path, width: int = 6, ext: str = ".jpg") -> int:
    """Decode every frame of `video_path` to out_dir/NNNNNN.jpg (0-based); returns the count."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video_path))
    if not cap.isOpened():
        raise OSError(f"cannot open video {video_path}")
    n = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            target = out_dir / f"{n:0{width}d}{ext}"
            if not target.exists():
                cv2.imwrite(str(target), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise OSError(f"no frames decoded from {video_path}")
    return n


def _prepare(video: VideoAnnotation, stem: str, root: Path, cache: Path, split: str | None) -> None:
    missing = [f for f in video.frames.values()
               if not (root / f.file_name).is_file() and not (cache / f.file_name).is_file()]
    if not missing:
        return
    clip = find_video(root, split, dict.fromkeys([video.name, stem]))
    if clip is None:
        raise FileNotFoundError(f"{video.source}: {len(missing)} frame images missing (e.g. "
                                f"{missing[0].file_name}) and no video {video.name}.* "
                                f"under {root / 'videos'}")
    sample = Path(missing[0].file_name)
    width = len(sample.stem) if sample.stem.isdigit() else 6
    extract_frames(clip, cache / sample.parent, width=width, ext=sample.suffix or ".jpg")


class ClipsDataset(PoseTrackDataset):
    """The user's clips (see module doc); same items and arguments as PoseTrackDataset."""

    def __init__(self, root, cfg: PoseModelConfig, train: bool, sigma: float = 3.0, split: str | None = None,
                 frames_cache=None, **kwargs):
        root = Path(root)
        ann_dir = root / "annotations" / split if split else root / "annotations"
        if not ann_dir.is_dir():
            raise FileNotFoundError(f"no annotations folder {ann_dir}")
        cache = Path(frames_cache) if frames_cache else root / ".frames"
        for ann in sorted(ann_dir.glob("*.json")):
            for video in load_posetrack(ann):
                _prepare(video, ann.stem, root, cache, split)
        super().__init__(ann_dir, [root, cache], cfg, train, sigma, **kwargs)


def synthetic_dataset(root, split: str, cfg: PoseModelConfig, train: bool, sigma: float = 3.0,
                      **kwargs) -> PoseTrackDataset:
    """The output of `vidpose synth --out ROOT`: PoseTrack format, read by the PoseTrack loader."""
    root = Path(root)
    return PoseTrackDataset(root / "annotations" / split, root, cfg, train, sigma, **kwargs)
