"""Who is in each frame of a job: client boxes, one full-frame box, or detections tracked over the clip.

A job's `PeopleSource` takes frames in clip order, a batch at a time (so a
detector runs once per frame, `batch` frames per call), and returns the
PersonBoxes (with stable track ids) of each frame. The worker keeps one
detector object per backend (`DetectorPool`), shared by all the jobs it holds;
trackers are per job.

Which source a job gets (`options.detector`, else the `detector` setting):
  provided    the job's `options.boxes` (sending boxes implies it)
  a detector  any name of the registry (service/detectors.py): nanodet, hog, onnx go through the
              ByteTrack-style tracker; full-frame (untracked) gives one box = the whole frame, track 0
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from service import detectors as registry
from service.metrics import DETECT_FRAMES, DETECT_SECONDS, PEOPLE_DETECTED, TRACKS_STARTED
from service.settings import Settings
from service.worker.boxes import GivenBoxes, InvalidOptions, PersonBox, parse_boxes
from service.worker.detect import DetectorConfig, DetectorError, make_detector
from service.worker.detect.base import Detector
from service.worker.tracker import Tracker, TrackerConfig

log = logging.getLogger(__name__)


def default_detector(settings: Settings) -> str:
    """The `detector` setting with "auto" resolved (service.detectors.resolve)."""
    return registry.resolve(settings)[0]


def job_mode(options: dict, settings: Settings) -> str:
    """provided or a registry detector name, for one job's options."""
    mode = options.get("detector")
    has_boxes = options.get("boxes") is not None
    if mode is None:
        return registry.PROVIDED if has_boxes else default_detector(settings)
    if mode not in registry.job_choices():
        raise InvalidOptions(f"detector must be one of {', '.join(registry.job_choices())}; got {mode!r}")
    if mode == registry.PROVIDED and not has_boxes:
        raise InvalidOptions("detector 'provided' needs options.boxes")
    if mode != registry.PROVIDED and has_boxes:
        raise InvalidOptions(f"options.boxes are only used with detector 'provided' (got {mode!r})")
    return mode


class DetectorPool:
    """One detector per backend per worker, made on first use (weights are read once)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._detectors: dict[str, Detector] = {}

    def available(self) -> list[str]:
        """Values of options.detector this worker accepts: provided + the registry's runnable ones."""
        return [registry.PROVIDED] + [n for n in registry.names()
                                      if registry.unavailable(n, self.settings) is None]

    def default(self) -> Detector:
        """The default detector, built now (worker start): logs the auto fallback to hog."""
        name, warning = registry.resolve(self.settings)
        if warning:
            log.warning(warning)
        det = self._build(name)
        log.info("default person detector %s (track-start score %.2f)%s", name,
                 registry.track_score(name, self.settings),
                 f" on {getattr(det, 'runtime', '')}" if getattr(det, "runtime", None) else "")
        return det

    def _build(self, name: str) -> Detector:
        with self._lock:
            if name not in self._detectors:
                self._detectors[name] = make_detector(name, DetectorConfig.from_settings(self.settings, name))
            return self._detectors[name]

    def get(self, name: str) -> Detector:
        try:
            return self._build(name)
        except DetectorError as e:  # e.g. onnx asked for but no usable model file here
            raise InvalidOptions(f"detector {name!r} is not available on this worker: {e}") from None


class PeopleSource:
    """Boxes for one job's frames, `batch` frames per call, in clip order."""

    def __init__(self, mode: str, batch: int = 1, given: GivenBoxes | None = None,
                 detector: Detector | None = None, tracker: Tracker | None = None):
        self.mode = mode
        self.batch = batch
        self._given = given
        self._detector = detector
        self._tracker = tracker
        self._seen_tracks: set[int] = set()

    def boxes(self, indices: Sequence[int], frames: Sequence[np.ndarray]) -> list[list[PersonBox]]:
        if self.mode == registry.PROVIDED:
            return [self._given(i, f) for i, f in zip(indices, frames, strict=True)]
        name = self._detector.name
        t0 = time.perf_counter()
        detections = self._detector.detect(list(frames))
        DETECT_SECONDS.labels(name).observe(time.perf_counter() - t0)
        DETECT_FRAMES.labels(name).inc(len(frames))
        out = []
        for dets in detections:
            PEOPLE_DETECTED.labels(name).inc(len(dets))
            if self._tracker is None:  # untracked (full-frame): the i-th box is track i, no score
                out.append([PersonBox(i, d.bbox, None) for i, d in enumerate(dets)])
                continue
            people = self._tracker.update(dets)
            new = {p.track_id for p in people} - self._seen_tracks
            if new:
                TRACKS_STARTED.inc(len(new))
                self._seen_tracks |= new
            out.append(people)
        return out


def people_source(options: dict, settings: Settings, pool: DetectorPool) -> PeopleSource:
    """The PeopleSource a job asks for (raises InvalidOptions for unusable options)."""
    mode = job_mode(options, settings)
    if mode == registry.PROVIDED:
        return PeopleSource(mode, given=GivenBoxes(parse_boxes(options["boxes"])))
    detector = pool.get(mode)
    tracker = None
    if registry.spec(mode).tracked:
        tracker = Tracker(TrackerConfig(high_score=registry.track_score(mode, settings),
                                        low_score=min(settings.detector_low_score,
                                                      registry.track_score(mode, settings)),
                                        match_iou=settings.tracker_match_iou,
                                        max_gap=settings.tracker_max_gap))
    return PeopleSource(mode, batch=settings.detector_batch, detector=detector, tracker=tracker)
