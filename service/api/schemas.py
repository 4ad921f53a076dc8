"""Response bodies of the HTTP API (pydantic models, shown in /docs). Job options and the result
shape are the job contract's (service/contract.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.contract import (  # noqa: F401  (re-exported: the result types are the contract's)
    Instance,
    JobOptions,
    ModelRef,
    ResultFrame,
    ResultPage,
    VideoInfo,
)

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


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


class JobView(BaseModel):
    job_id: str
    status: JobStatusName
    progress: float = Field(description="frames_done / frames_total, 0..1")
    frames_total: int = Field(description="Frames the job processes (the worker's decoded count once it "
                              "started).")
    frames_done: int = Field(description="Frames whose poses are estimated and stored (the result so far).")
    frames_detected: int = Field(
        description="Frames decoded with their people found (detected and tracked, or looked up in the "
        "client's boxes): the first stage, which runs ahead of frames_done. Updated per detector batch, at "
        "most about every 0.5 s; frames_total once the job succeeded. A job resumed after its worker died "
        "re-runs detection from frame 0, so there it counts up again from 0 and can trail frames_done.")
    created_at: float | None = Field(description="Unix time (seconds)")
    started_at: float | None
    finished_at: float | None
    model: ModelRef
    error: ErrorDetail | None


class ModelEntry(BaseModel):
    name: str
    version: str | None = None
    default: bool
    loaded: bool = Field(description="At least one live worker serves it.")
    workers: int
    source: Literal["workers", "models_dir"]
    devices: list[str] = []
    config: dict = Field({}, description="A summary of the model's configuration.")
    window: int | None = Field(None, description="Temporal window T (the only `options.window` it accepts).")
    keypoint_names: list[str] = Field([], description="Its keypoint slots, in output order (empty: COCO-17).")
    error: str | None = None
    card: dict | None = Field(None, description="Its model card in short: summary, trained_on, accuracy "
                              "[{data, metric, value}], doc (docs/model-card.md for the default).")


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
