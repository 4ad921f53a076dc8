"""The job contract: what crosses process boundaries between the API, the workers and the clients.

One set of types (pydantic, torch-free) for

* `JobOptions`: the `options` of POST /estimate. The API validates them once and stores
  `model_dump(exclude_none=True)` with the job; the worker loads the same type
  (`JobOptions.model_validate`) and checks only what depends on its own state (the model's window,
  the detectors it has).
* `ModelInfo`: what a worker publishes for each model it serves (Redis `P:models`) and what the API
  reads back, or builds from a checkpoint header when no worker has registered yet.
* `Instance`, `ResultFrame`, `ResultPage`: the native JSON result. The worker builds instances with
  `instance()` and frames with `result_frame()`; the API builds pages with `result_page()`; the
  exports (service/api/formats.py), the overlay renderer, the CLI client and the web page read these
  fields.

Adding a field to the result: add it to the model here and to the builder that fills it (`instance`,
`result_frame` or `result_page`), then set it where the value is known (the worker's
`service/worker/pipeline.py: to_instance` for an instance field, `service/api/routes.py:
result_document` for a page field).

Scores (the same meaning in every output):
* keypoint score, in [0, 1]: the model's confidence that the joint is where it is reported. For the
  served default (MoveNet) it is the heatmap value at the peak, a sigmoid output, so already in
  [0, 1]; ViT heatmaps are regressed Gaussians whose peaks can exceed 1: they are clamped to [0, 1]
  (and a NaN becomes 0).
* instance score, in [0, 1]: the mean keypoint score of the person, times the person box's score
  when the box has one (a detector's confidence, or the `score` of a client box clamped to [0, 1]).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from model.keypoints import COCO_KEYPOINTS, COCO_SKELETON, POSETRACK18_KEYPOINTS
from service import detectors
from service.box_options import frame_box_lists

SCHEMA_VERSION = 1
KEYPOINT_SCORE = ("Keypoint score in [0, 1]: the model's confidence in the joint. MoveNet (the served "
                  "default): the heatmap value at the peak (a sigmoid). ViT heatmap peaks can exceed 1 "
                  "and are clamped to 1.")
KEYPOINT_STD = ("Per keypoint, in the order of `keypoint_names`: how far apart the diffusion head's K "
                "hypotheses put the joint -- the root mean squared distance of their keypoints (each "
                "hypothesis' own heatmap peak, sub-pixel) from their mean, in image pixels. Larger means "
                "less certain (docs/results.md measures how it relates to error). null unless the job "
                "decodes K >= 2 hypotheses with diffusion on.")
INSTANCE_SCORE = ("Instance score in [0, 1]: the mean keypoint score of the person, times the person box's "
                  "score when the box has one (detector confidence, or a client box's `score`).")


# ------------------------------------------------------------------------------------------ options
def _box(raw: Any, where: str) -> dict:
    """[x, y, w, h] or {"bbox"|"box": [...], "track_id"?, "score"?} -> {"bbox", "track_id"?, "score"?}."""
    out: dict[str, Any] = {}
    if isinstance(raw, dict):
        unknown = set(raw) - {"bbox", "box", "track_id", "score"}
        if unknown:
            raise ValueError(f"{where}: unknown box fields {sorted(unknown)}")
        bbox = raw.get("bbox", raw.get("box"))
        track_id, score = raw.get("track_id"), raw.get("score")
        if track_id is not None:
            if isinstance(track_id, bool) or not isinstance(track_id, int) or track_id < 0:
                raise ValueError(f"{where}: track_id must be a non-negative integer")
            out["track_id"] = track_id
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise ValueError(f"{where}: score must be a finite number")
            out["score"] = float(score)
    else:
        bbox = raw
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError(f"{where}: a box must be [x, y, w, h] (COCO, pixels)")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in bbox):
        raise ValueError(f"{where}: box values must be numbers")
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError(f"{where}: box needs finite values and w, h > 0")
    out["bbox"] = [x, y, w, h]
    return out


class ClientBox(BaseModel):
    """One person box of `options.boxes`, as stored after validation."""

    bbox: list[float] = Field(min_length=4, max_length=4,
                              description="COCO [x, y, w, h] in pixels, w, h > 0.")
    track_id: int | None = Field(None, ge=0, description="The person's id; default: the box's index in its "
                                 "frame's list.")
    score: float | None = Field(None, description="Detection score; multiplies the instance score (clamped "
                                "to [0, 1]).")


class JobOptions(BaseModel):
    """The optional `options` JSON part of POST /estimate (stored with the job, read by the worker)."""

    model_config = ConfigDict(extra="forbid")

    boxes: dict[str, list[ClientBox]] | None = Field(
        None, description="Person boxes per frame, COCO [x, y, w, h] in pixels: a list indexed by frame "
        "(`boxes[i]` = boxes of frame i) or an object keyed by frame index. A box is [x, y, w, h] or "
        "{\"bbox\": [x, y, w, h], \"track_id\": int, \"score\": float}; without track_id the i-th box of "
        "each frame is track i. Frames without boxes have no people. Sending boxes implies "
        "detector=provided. Stored as an object keyed by frame index of {bbox, track_id?, score?}.")
    detector: str | None = Field(
        None, description="Where person boxes come from: provided (`boxes`) or a detector of the registry "
        "(GET /detectors: " + ", ".join(f"{s.name} = {s.summary}" for s in detectors.REGISTRY.values())
        + "). Detected people are tracked across frames (stable track_id). Default: provided when `boxes` "
        "are sent, else the server's `detector` setting.",
        json_schema_extra={"enum": list(detectors.job_choices())})
    model: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                              description="Checkpoint name (GET /models); default: the server's default.")
    window: int | None = Field(None, ge=1, le=63, description="Temporal window T (odd number of frames); "
                               "must equal the model's own window (GET /models).")
    diffusion_steps: int | None = Field(None, ge=0, le=100, description="DDIM steps of the diffusion head "
                                        "(models with a diffusion head; 0 = the temporal head alone).")
    hypotheses: int | None = Field(None, ge=1, le=32, description="Diffusion hypotheses averaged.")
    max_frames: int | None = Field(None, ge=1, description="Process only the first max_frames frames.")

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, v: str | None) -> str | None:
        if v is not None and v not in detectors.job_choices():
            raise ValueError(f"unknown detector {v!r}; expected one of {', '.join(detectors.job_choices())}")
        return v

    @field_validator("window")
    @classmethod
    def _odd(cls, v: int | None) -> int | None:
        if v is not None and v % 2 == 0:
            raise ValueError("window must be odd (the key frame sits in the middle)")
        return v

    @model_validator(mode="after")
    def _boxes_need_provided(self) -> JobOptions:
        if self.detector == "provided" and self.boxes is None:
            raise ValueError("detector 'provided' needs `boxes`")
        if self.boxes is not None and self.detector not in (None, "provided"):
            raise ValueError(f"`boxes` are only used with detector 'provided' (got {self.detector!r})")
        return self

    @field_validator("boxes", mode="before")
    @classmethod
    def _normalize_boxes(cls, raw: Any) -> Any:
        """Both accepted shapes -> {"frame_index": [box, ...]} (frames with no boxes dropped)."""
        if raw is None:
            return None
        out: dict[str, list[dict]] = {}
        for frame, boxes in frame_box_lists(raw):
            parsed = [_box(b, f"boxes[{frame}][{i}]") for i, b in enumerate(boxes)]
            ids = [b.get("track_id", i) for i, b in enumerate(parsed)]
            if len(set(ids)) != len(ids):
                raise ValueError(f"boxes[{frame}]: track ids repeat within one frame")
            if parsed:
                out[str(frame)] = parsed
        return out

    def stored(self) -> dict:
        """The JSON-ready form kept with the job (what the worker validates again)."""
        return self.model_dump(exclude_none=True)


# ------------------------------------------------------------------------------------------ models
class ModelInfo(BaseModel):
    """A served model as workers publish it (and as the API reads it back)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_version: int = SCHEMA_VERSION
    name: str
    version: str | None = Field(None, description="Checkpoint version (its info, else a file hash).")
    input_size: list[int] | None = Field(None, description="Crop the model takes, [height, width] pixels.")
    keypoint_names: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("keypoint_names", "keypoints"),
        description="Names of the model's keypoint slots, in output order (empty: COCO-17).")
    skeleton: list[list[int]] = Field(default_factory=list, description="Limbs as 0-based keypoint index "
                                      "pairs (empty: COCO's).")
    window: int | None = Field(None, description="Temporal window T: frames the model sees per key frame.")
    detectors: list[str] = Field(default_factory=list, description="Detectors the serving worker can run.")
    config: dict = Field(default_factory=dict, description="A summary of the model's configuration.")
    error: str | None = Field(None, description="Why the checkpoint cannot be read (catalog only).")

    @model_validator(mode="after")
    def _window_from_config(self) -> ModelInfo:
        if self.window is None and isinstance(self.config.get("window"), int):
            self.window = self.config["window"]
        return self

    def names(self) -> list[str]:
        """The keypoint slot names (COCO-17 when the model states none)."""
        return list(self.keypoint_names) or list(COCO_KEYPOINTS)

    def limbs(self) -> list[list[int]]:
        """The model's skeleton; without one, COCO's for a COCO or PoseTrack18 model (same limbs)."""
        if self.skeleton:
            return [list(p) for p in self.skeleton]
        if tuple(self.names()) in (COCO_KEYPOINTS, POSETRACK18_KEYPOINTS):
            return [list(p) for p in COCO_SKELETON]
        return []


# ------------------------------------------------------------------------------------------ results
class ModelRef(BaseModel):
    name: str = Field(description="The model (checkpoint) name.")
    version: str | None = Field(None, description="Its version (checkpoint info, else a file hash).")


class VideoInfo(BaseModel):
    width: int = Field(description="Frame width, pixels.")
    height: int = Field(description="Frame height, pixels.")
    fps: float = Field(description="Frames per second (as the container states it).")
    frames: int = Field(description="Frames the job covers (decoded count).")


class Instance(BaseModel):
    """One person in one frame."""

    track_id: int = Field(ge=0, description="The person's id, stable across frames of the job.")
    bbox: list[float] = Field(min_length=4, max_length=4, description="The person box the keypoints were "
                              "decoded from, COCO [x, y, w, h] in image pixels: the tracked (or given) box; "
                              "where the model's re-crop rule fired (the key frame's confidence dropped), "
                              "the mean of the track's boxes T//2 frames before and after.")
    score: float = Field(ge=0.0, le=1.0, description=INSTANCE_SCORE)
    keypoints: list[list[float]] = Field(description="One [x, y, score] per keypoint, in the order of "
                                         "`keypoint_names`; x, y in image pixels (clipped to the frame). "
                                         + KEYPOINT_SCORE)

    keypoint_std: list[float] | None = Field(None, description=KEYPOINT_STD)

    @field_validator("keypoints")
    @classmethod
    def _triples(cls, v: list[list[float]]) -> list[list[float]]:
        for kp in v:
            if len(kp) != 3 or not 0.0 <= kp[2] <= 1.0:
                raise ValueError("a keypoint is [x, y, score] with score in [0, 1]")
        return v


class ResultFrame(BaseModel):
    frame_index: int = Field(ge=0, description="0-based index of the frame in the clip.")
    timestamp_s: float = Field(description="The frame's presentation time, seconds.")
    instances: list[Instance] = Field(description="People in the frame, by track_id.")


class ResultPage(BaseModel):
    """One page of a succeeded job's result (GET /jobs/{id}/result, format=json)."""

    schema_version: int = Field(SCHEMA_VERSION, description="Version of this result shape.")
    job_id: str = Field(description="The job.")
    model: ModelRef = Field(description="The model that made the result.")
    video: VideoInfo = Field(description="The clip.")
    keypoint_names: list[str] = Field(description="Names of the keypoint slots (the model's own).")
    skeleton: list[list[int]] = Field(description="Limbs as 0-based index pairs into keypoint_names (the "
                                      "model's own).")
    frames: list[ResultFrame] = Field(description="This page's frames, in order (start_frame.. at most "
                                      "`limit` frames).")
    next_start_frame: int | None = Field(description="start_frame of the next page; null on the last.")


def _unit(v: float) -> float:
    v = float(v)
    return 0.0 if not math.isfinite(v) else min(1.0, max(0.0, v))


def instance(track_id: int, bbox, keypoints, box_score: float | None = None, keypoint_std=None) -> dict:
    """An `Instance` as stored: keypoints (K, 3) x, y, raw score -> rounded, scores in [0, 1]; the
    instance score as INSTANCE_SCORE says; keypoint_std (K,) pixels when given (KEYPOINT_STD).
    Raises ValueError on non-finite coordinates."""
    kps = [[round(float(x), 2), round(float(y), 2), round(_unit(s), 4)] for x, y, s in keypoints]
    if not all(math.isfinite(v) for kp in kps for v in kp[:2]):
        raise ValueError("model produced non-finite keypoints")
    mean = sum(kp[2] for kp in kps) / len(kps) if kps else 0.0
    score = mean * (_unit(box_score) if box_score is not None else 1.0)
    std = None if keypoint_std is None else [round(float(v), 2) for v in keypoint_std]
    return {"track_id": int(track_id), "bbox": [round(float(v), 2) for v in bbox], "score": round(score, 4),
            "keypoints": kps, "keypoint_std": std}


def result_frame(index: int, timestamp_s: float, instances: list[dict]) -> dict:
    """A `ResultFrame` as stored (instances sorted by track_id)."""
    return {"frame_index": int(index), "timestamp_s": round(float(timestamp_s), 6),
            "instances": sorted(instances, key=lambda inst: inst["track_id"])}


def result_page(job_id: str, model: ModelRef, video: VideoInfo, info: ModelInfo, frames: list[dict],
                next_start_frame: int | None) -> dict:
    """A `ResultPage` as served (frames are stored `result_frame`s)."""
    return {"schema_version": SCHEMA_VERSION, "job_id": job_id, "model": model.model_dump(),
            "video": video.model_dump(), "keypoint_names": info.names(), "skeleton": info.limbs(),
            "frames": frames, "next_start_frame": next_start_frame}

