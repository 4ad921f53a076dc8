"""Request options and response bodies of the HTTP API (pydantic models, shown in /docs)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service import detectors
from service.box_options import frame_box_lists

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


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


class EstimateOptions(BaseModel):
    """The optional `options` JSON part of POST /estimate."""

    model_config = ConfigDict(extra="forbid")

    boxes: dict[str, list[dict]] | None = Field(
        None, description="Person boxes per frame, COCO [x, y, w, h] in pixels: a list indexed by frame "
        "(`boxes[i]` = boxes of frame i) or an object keyed by frame index. A box is [x, y, w, h] or "
        "{\"bbox\": [x, y, w, h], \"track_id\": int, \"score\": float}; without track_id the i-th box of "
        "each frame is track i. Frames without boxes have no people. Sending boxes implies "
        "detector=provided.")
    detector: str | None = Field(
        None, description="Where person boxes come from: provided (`boxes`) or a detector of the registry "
        "(GET /detectors: " + ", ".join(f"{s.name} = {s.summary}" for s in detectors.REGISTRY.values())
        + "). Detected people are tracked across frames (stable track_id). Default: provided when `boxes` "
        "are sent, else the server's `detector` setting.",
        json_schema_extra={"enum": list(detectors.job_choices())})
    model: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                              description="Checkpoint name (GET /models); default: the server's default.")
    window: int | None = Field(None, ge=1, le=63, description="Temporal window T (odd number of frames).")
    diffusion_steps: int | None = Field(None, ge=0, le=100, description="DDIM steps of the diffusion head.")
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
    def _boxes_need_provided(self) -> EstimateOptions:
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


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatusName
    status_url: str
    result_url: str


class ModelRef(BaseModel):
    name: str
    version: str | None = None


class JobView(BaseModel):
    job_id: str
    status: JobStatusName
    progress: float = Field(description="frames_done / frames_total, 0..1")
    frames_total: int
    frames_done: int
    created_at: float | None = Field(description="Unix time (seconds)")
    started_at: float | None
    finished_at: float | None
    model: ModelRef
    error: ErrorDetail | None


class VideoInfo(BaseModel):
    width: int
    height: int
    fps: float
    frames: int


class Instance(BaseModel):
    track_id: int
    bbox: list[float]
    score: float | None
    keypoints: list[list[float]]


class ResultFrame(BaseModel):
    frame_index: int
    timestamp_s: float
    instances: list[Instance]


class ResultPage(BaseModel):
    job_id: str
    model: ModelRef
    video: VideoInfo
    keypoint_names: list[str]
    skeleton: list[list[int]]
    frames: list[ResultFrame]
    next_start_frame: int | None


class ModelEntry(BaseModel):
    name: str
    version: str | None = None
    default: bool
    loaded: bool = Field(description="At least one live worker serves it.")
    workers: int
    source: Literal["workers", "models_dir"]
    devices: list[str] = []
    config: dict = {}
    error: str | None = None


class ModelList(BaseModel):
    default_model: str
    models: list[ModelEntry]


class DetectorEntry(BaseModel):
    name: str
    summary: str
    tracked: bool = Field(description="Its boxes go through the tracker (false: full-frame).")
    track_score: float | None = Field(description="Detections scoring at least this start tracks.")
    available: bool = Field(description="At least one live worker can run it (with no live worker: "
                            "whether this server's settings allow it).")
    workers: int


class DetectorList(BaseModel):
    default_detector: str = Field(description="Used when a job names none and sends no boxes.")
    detectors: list[DetectorEntry]
