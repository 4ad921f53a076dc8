"""Every Prometheus metric of the service, defined once.

API and worker are separate processes, each with its own registry, scraped
separately (no multiprocess mode needed):
- the API serves `API_REGISTRY` at `GET /metrics` on api_port;
- each worker serves `WORKER_REGISTRY` at `GET /metrics` on worker_metrics_port.
Scrape both jobs; `vidpose_jobs_finished_total` exists in both (the API counts the
cancellations it performs, workers count succeeded/failed), so sum it by status.
Labels never carry job ids (unbounded cardinality): only route, method, status,
model, reason, device, version and detector.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

API_REGISTRY = CollectorRegistry()
WORKER_REGISTRY = CollectorRegistry()
ProcessCollector(registry=API_REGISTRY)
ProcessCollector(registry=WORKER_REGISTRY)

# Buckets (seconds unless named otherwise).
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_JOB_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_BATCH_WAIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)
_FORWARD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_UPLOAD_BUCKETS = tuple(float(2**p) for p in range(16, 31, 2))  # 64 KiB .. 1 GiB

# ---------------- API process ----------------
HTTP_REQUESTS = Counter(
    "vidpose_http_requests_total", "HTTP requests by route template, method and status code.",
    ["route", "method", "status"], registry=API_REGISTRY)
HTTP_DURATION = Histogram(
    "vidpose_http_request_duration_seconds", "HTTP request latency (whole request, upload included).",
    ["route", "method"], buckets=_HTTP_BUCKETS, registry=API_REGISTRY)
JOBS_SUBMITTED = Counter(
    "vidpose_jobs_submitted_total", "Jobs created by POST /estimate (idempotent replays not counted).",
    ["model"], registry=API_REGISTRY)
JOBS_REJECTED = Counter(
    "vidpose_jobs_rejected_total", "POST /estimate rejections by reason (error code).",
    ["reason"], registry=API_REGISTRY)
API_JOBS_FINISHED = Counter(
    "vidpose_jobs_finished_total", "Jobs that reached a terminal state in this process (API: cancelled, "
    "and failed model_not_served: service/api/stranded.py).",
    ["status"], registry=API_REGISTRY)
UPLOAD_BYTES = Histogram(
    "vidpose_upload_bytes", "Size of accepted uploads in bytes.", buckets=_UPLOAD_BUCKETS,
    registry=API_REGISTRY)
QUEUE_JOBS = Gauge(
    "vidpose_queue_jobs", "Jobs queued or in progress per model (stream length), read at scrape time.",
    ["model"], registry=API_REGISTRY)
BACKLOG_FRAMES = Gauge(
    "vidpose_backlog_frames", "Frames of queued and running jobs (compared with max_queued_frames).",
    registry=API_REGISTRY)
LIVE_WORKERS = Gauge(
    "vidpose_live_workers", "Workers with a heartbeat within worker_ttl_s, read at scrape time.",
    registry=API_REGISTRY)
DEAD_LETTER_JOBS = Gauge(
    "vidpose_dead_letter_jobs",
    "Entries in the dead-letter stream (jobs delivered too often), read at scrape time.",
    registry=API_REGISTRY)
OVERLAY_RENDERS = Counter(
    "vidpose_overlay_renders_total", "Overlay videos rendered by the API, by outcome (ok, failed).",
    ["outcome"], registry=API_REGISTRY)
OVERLAY_RENDER_SECONDS = Histogram(
    "vidpose_overlay_render_seconds", "Time to render and encode one overlay video.",
    buckets=_JOB_BUCKETS, registry=API_REGISTRY)

# ---------------- worker process ----------------
JOBS_FINISHED = Counter(
    "vidpose_jobs_finished_total", "Jobs that reached a terminal state in this worker.",
    ["status"], registry=WORKER_REGISTRY)
JOB_DURATION = Histogram(
    "vidpose_job_duration_seconds", "Job run time, start (claimed) to finish.",
    ["model"], buckets=_JOB_BUCKETS, registry=WORKER_REGISTRY)
JOB_QUEUE_WAIT = Histogram(
    "vidpose_job_queue_wait_seconds", "Time from submit to a worker starting the job.",
    ["model"], buckets=_WAIT_BUCKETS, registry=WORKER_REGISTRY)
BATCH_SIZE = Histogram(
    "vidpose_batch_size", "Windows per forward pass of the dynamic batcher.",
    ["model"], buckets=_BATCH_SIZE_BUCKETS, registry=WORKER_REGISTRY)
BATCH_WAIT = Histogram(
    "vidpose_batch_wait_seconds", "How long the oldest window of a batch waited before it ran.",
    ["model"], buckets=_BATCH_WAIT_BUCKETS, registry=WORKER_REGISTRY)
MODEL_FORWARD = Histogram(
    "vidpose_model_forward_seconds",
    "Model forward time per call, by stage (encode, decode, confidence: the re-crop rule).",
    ["model", "stage"], buckets=_FORWARD_BUCKETS, registry=WORKER_REGISTRY)
RECROPS = Counter(
    "vidpose_recrops_total", "Key frames decoded from a second crop at the neighbours' mean box because "
    "their single-frame confidence dropped (model/windows.py wants_recrop).", ["model"],
    registry=WORKER_REGISTRY)
FRAMES_PROCESSED = Counter(
    "vidpose_frames_processed_total", "Result frames written.", ["model"], registry=WORKER_REGISTRY)
WORKER_UP = Gauge(
    "vidpose_worker_up", "1 while the worker loop runs (0 while draining / stopped).",
    registry=WORKER_REGISTRY)
WORKER_HEARTBEAT = Gauge(
    "vidpose_worker_last_heartbeat_timestamp_seconds", "Unix time of the last heartbeat written to Redis.",
    registry=WORKER_REGISTRY)
WORKER_JOBS_HELD = Gauge(
    "vidpose_worker_jobs_held", "Jobs this worker holds right now.", registry=WORKER_REGISTRY)
MODEL_INFO = Gauge(
    "vidpose_model_info", "Loaded checkpoint (value 1).", ["name", "version", "device"],
    registry=WORKER_REGISTRY)
GPU_MEMORY_ALLOCATED = Gauge(
    "vidpose_gpu_memory_allocated_bytes", "torch.cuda.memory_allocated per device (CUDA only).",
    ["device"], registry=WORKER_REGISTRY)
GPU_MEMORY_RESERVED = Gauge(
    "vidpose_gpu_memory_reserved_bytes", "torch.cuda.memory_reserved per device (CUDA only).",
    ["device"], registry=WORKER_REGISTRY)
GPU_MEMORY_MAX_ALLOCATED = Gauge(
    "vidpose_gpu_memory_max_allocated_bytes", "torch.cuda.max_memory_allocated per device (CUDA only).",
    ["device"], registry=WORKER_REGISTRY)
DETECT_SECONDS = Histogram(
    "vidpose_detect_seconds", "Person detector time per call (a batch of frames).",
    ["detector"], buckets=_FORWARD_BUCKETS, registry=WORKER_REGISTRY)
DETECT_FRAMES = Counter(
    "vidpose_detect_frames_total", "Frames run through a person detector.", ["detector"],
    registry=WORKER_REGISTRY)
PEOPLE_DETECTED = Counter(
    "vidpose_people_detected_total", "Person boxes the detector returned (before tracking).", ["detector"],
    registry=WORKER_REGISTRY)
TRACKS_STARTED = Counter(
    "vidpose_tracks_started_total", "Person tracks the tracker started (new track ids).",
    registry=WORKER_REGISTRY)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition of a registry."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
