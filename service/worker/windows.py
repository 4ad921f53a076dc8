"""T-frame windows per tracked person, built while the clip streams in.

For key frame t of track k the window is frames t-h..t+h (h = T//2), clamped to
the clip and to the run of frames where track k exists (a person entering or
leaving repeats the nearest frame they are in; they are not dropped). Each
frame of a window uses THAT frame's box of the track, so one (frame, track)
crop is made once, encoded once (its backbone features cached on the CropRef)
and shared by every window that contains it.

With `recrop` (the model's re-crop rule, model/windows.py), each window whose outermost frames are
really t-h and t+h also carries a second crop of its key frame at the mean of those two boxes (uint8,
cut when the window is emitted: the builder keeps the last h+1 frames for that); the batcher encodes
it only when the rule fires (pipeline.run_windows).

Memory stays bounded on long clips: a CropRef holds its crop until encoded,
then its features until the last window that can use it is done ("pins": one
per window referencing it, plus one held until no future window can).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.backbones import InputSpec
from model.heatmaps import box_to_center_size, crop_affine, warp_crop
from model.windows import clamp_window, recrop_box  # the window rules, shared with training
from service.worker.boxes import PersonBox


@dataclass(eq=False)
class CropRef:
    """One person's crop in one frame; features replace the crop once encoded."""

    frame: int
    box: PersonBox
    center: np.ndarray
    size: np.ndarray
    crop: np.ndarray | None  # (3, H, W) float32, normalised; None once encoded
    features: Any = None  # model.encode_frames output for this crop, (C, gh, gw)
    pins: int = 1  # the builder's own pin, dropped when no future window can use it
    encodes: int = 0  # how many times it was encoded (1 when reuse works)
    confidence: float | None = None  # single-frame mean joint score, once the re-crop rule asked

    @property
    def track_id(self) -> int:
        return self.box.track_id


@dataclass(eq=False)
class AltCrop:
    """The key frame cropped again at the mean of the outermost neighbours' boxes."""

    bbox: tuple[float, float, float, float]
    center: np.ndarray
    size: np.ndarray
    crop: np.ndarray  # (H, W, 3) uint8 RGB; normalised only if it is encoded


@dataclass(eq=False)
class Window:
    job_id: str
    key_frame: int
    refs: tuple[CropRef, ...]  # T refs, time order; refs[T//2] is the key frame's
    batch_key: tuple = ()
    enqueued_at: float = 0.0
    alt: AltCrop | None = None  # the re-crop candidate (WindowBuilder recrop=True)
    recropped: bool = False  # set by pipeline.run_windows when the keypoints come from `alt`

    @property
    def track_id(self) -> int:
        return self.refs[len(self.refs) // 2].track_id

    @property
    def key_ref(self) -> CropRef:
        return self.refs[len(self.refs) // 2]

    @property
    def frames(self) -> tuple[int, ...]:
        return tuple(r.frame for r in self.refs)


class WindowBuilder:
    """Streams frames in, yields ready windows; one builder per job.

    add_frame(i, rgb, boxes) must be called for i = 0, 1, 2, ... in order;
    windows for key t come out once frame t+h is in (or at finish()); release(w) once a window came
    back from the batcher (or was dropped). One thread (the job's) does all of this: no lock.
    """

    def __init__(self, job_id: str, window: int, input_spec: InputSpec, batch_key: tuple = (),
                 recrop: bool = False):
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be odd and >= 1, got {window}")
        self.job_id = job_id
        self.window = window
        self.half = window // 2
        self.input_spec = input_spec  # the backbone's crop size and normalisation
        self.input_size = tuple(input_spec.size)
        self.batch_key = batch_key
        self.recrop = recrop and self.half > 0
        self._images: dict[int, np.ndarray] = {}  # frames whose key windows are not out yet (recrop only)
        self._refs: dict[tuple[int, int], CropRef] = {}  # (frame, track) -> live ref
        self._builder_pinned: set[tuple[int, int]] = set()  # refs still holding the builder's pin
        self._present: set[tuple[int, int]] = set()  # every (frame, track) seen
        self._frame_tracks: dict[int, list[int]] = {}  # frame -> tracks (until its key windows exist)
        self.frames_added = 0
        self._next_key = 0
        self.crops_made = 0
        self.finished = False

    # -- producer side -------------------------------------------------------------------
    def add_frame(self, frame_index: int, rgb: np.ndarray, boxes: list[PersonBox]) -> list[Window]:
        if frame_index != self.frames_added:
            raise ValueError(f"frames must come in order: expected {self.frames_added}, got {frame_index}")
        crops = []
        for box in boxes:
            center, size = box_to_center_size(box.bbox, self.input_size)
            m = crop_affine(center, size, self.input_size)
            crop = self.input_spec.normalize(warp_crop(rgb, m, self.input_size))
            crops.append(CropRef(frame_index, box, center, size, crop))
        for ref in crops:
            self._refs[(frame_index, ref.track_id)] = ref
            self._builder_pinned.add((frame_index, ref.track_id))
            self._present.add((frame_index, ref.track_id))
        self._frame_tracks[frame_index] = [r.track_id for r in crops]
        if self.recrop and crops:
            self._images[frame_index] = rgb
        self.crops_made += len(crops)
        self.frames_added += 1
        ready = []
        while self._next_key <= frame_index - self.half:
            ready += self._emit(self._next_key)
        return ready

    def finish(self) -> list[Window]:
        """End of clip: the remaining windows; every builder pin is dropped."""
        ready = []
        while self._next_key < self.frames_added:
            ready += self._emit(self._next_key)
        for key in list(self._builder_pinned):
            self._unpin(key)
        self.finished = True
        return ready

    def _emit(self, key: int) -> list[Window]:
        windows = []
        for track in self._frame_tracks.pop(key, []):
            frames = clamp_window(key, self.half, lambda f, t=track: (f, t) in self._present)
            refs = tuple(self._refs[(f, track)] for f in frames)
            for ref in {id(r): r for r in refs}.values():
                ref.pins += 1
            windows.append(Window(self.job_id, key, refs, self.batch_key, alt=self._alt_crop(key, refs)))
        self._images.pop(key, None)
        self._next_key = key + 1
        # Windows with key >= key+1 reach back to key+1-half at most: older refs lose the builder pin.
        old = key - self.half
        if old >= 0:
            for k in [k for k in self._builder_pinned if k[0] == old]:
                self._unpin(k)
        return windows

    def _alt_crop(self, key: int, refs: tuple[CropRef, ...]) -> AltCrop | None:
        """The key frame cut at the mean of the boxes of frames key-h and key+h (both really there)."""
        if not self.recrop or refs[0].frame != key - self.half or refs[-1].frame != key + self.half:
            return None
        bbox = recrop_box(refs[0].box.bbox, refs[-1].box.bbox)
        center, size = box_to_center_size(bbox, self.input_size)
        crop = warp_crop(self._images[key], crop_affine(center, size, self.input_size), self.input_size)
        return AltCrop(bbox, center, size, crop)

    def _unpin(self, key: tuple[int, int]) -> None:
        """Drop the builder's pin of one ref."""
        self._builder_pinned.discard(key)
        ref = self._refs.get(key)
        if ref is None:
            return
        ref.pins -= 1
        if ref.pins <= 0:
            self._drop(key, ref)

    def _drop(self, key: tuple[int, int], ref: CropRef) -> None:
        ref.crop = None
        ref.features = None
        del self._refs[key]

    def release(self, window: Window) -> None:
        """A window is done (or dropped): its refs lose one pin each."""
        for ref in {id(r): r for r in window.refs}.values():
            ref.pins -= 1
            key = (ref.frame, ref.track_id)
            if ref.pins <= 0 and self._refs.get(key) is ref:
                self._drop(key, ref)

    def live_refs(self) -> int:
        return len(self._refs)
