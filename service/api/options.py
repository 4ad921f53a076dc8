"""The `options` part of POST /estimate: parsed and validated off the event loop, held to the server's
cost limits, and checked against the probed clip.

`json.loads` and pydantic's validation are single C/Rust calls that keep the GIL for their whole
run (about 1 s per 10 MB of boxes on one core), so even in a thread they would freeze the event
loop (`/healthz` included) for that long. A part of up to INLINE_BYTES runs in the threadpool (a
few ms at most); a larger one runs in a small process pool (spawned once, on first use) and comes
back as a compact JSON string (what the job stores) plus a numpy array of the boxes: cheap to move.

Box counts are checked before pydantic sees the boxes, so an oversized part costs a json.loads, not
a validation of every box. `check_boxes_fit` runs once the clip is probed (its size and frame count).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.errors import ApiError, validation_message
from service.box_options import frame_box_lists
from service.contract import JobOptions

INLINE_BYTES = 256 * 1024  # larger options parts are parsed in the process pool
_NAMED = 5  # offending boxes / frames named in a message


class OptionsError(Exception):
    """A refused options part; picklable (it may come back from the process pool)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, code, message)

    def api_error(self) -> ApiError:
        return ApiError(*self.args)


@dataclass(frozen=True)
class OptionLimits:
    """The cost caps of one job (settings max_boxes_per_frame, max_boxes_total, max_diffusion_steps,
    max_hypotheses)."""

    boxes_per_frame: int
    boxes_total: int
    diffusion_steps: int
    hypotheses: int

    @classmethod
    def of(cls, settings) -> OptionLimits:
        return cls(settings.max_boxes_per_frame, settings.max_boxes_total, settings.max_diffusion_steps,
                   settings.max_hypotheses)


@dataclass(frozen=True)
class ParsedOptions:
    options: JobOptions  # everything but the boxes (those are in `stored` and `boxes`)
    stored: str  # compact JSON of JobOptions.stored(): what the job keeps and the worker reads
    boxes: np.ndarray | None  # (N, 6) float64 rows: frame, index in its frame, x, y, w, h


def _over(message: str) -> OptionsError:
    return OptionsError(422, "options_over_limit", message)


def _check_counts(raw, limits: OptionLimits) -> None:
    try:
        lists = frame_box_lists(raw)
    except ValueError:
        return  # malformed: the validation below names the problem
    per_frame: dict[int, int] = {}
    for frame, boxes in lists:
        per_frame[frame] = per_frame.get(frame, 0) + len(boxes)
    crowded = sorted(f for f, n in per_frame.items() if n > limits.boxes_per_frame)
    if crowded:
        named = ", ".join(f"boxes[{f}] has {per_frame[f]}" for f in crowded[:_NAMED])
        more = f" (and {len(crowded) - _NAMED} more frames)" if len(crowded) > _NAMED else ""
        raise _over(f"options.boxes: {named}{more}; this server takes at most {limits.boxes_per_frame} "
                    "boxes per frame (VIDPOSE_MAX_BOXES_PER_FRAME)")
    total = sum(per_frame.values())
    if total > limits.boxes_total:
        raise _over(f"options.boxes holds {total} boxes; this server takes at most {limits.boxes_total} "
                    "per job (VIDPOSE_MAX_BOXES_TOTAL)")


def parse_options(raw: str | None, limits: OptionLimits) -> ParsedOptions:
    """The options part -> ParsedOptions; OptionsError (400 not a JSON object, 422 invalid or over a
    limit) otherwise. Pure and synchronous: runs in a thread or in the process pool."""
    if raw is None or not raw.strip():
        return ParsedOptions(JobOptions(), "{}", None)
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise OptionsError(400, "invalid_options", f"options is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise OptionsError(400, "invalid_options", "options must be a JSON object")
    if data.get("boxes") is not None:
        _check_counts(data["boxes"], limits)
    try:
        options = JobOptions.model_validate(data)
    except ValidationError as e:
        raise OptionsError(422, "invalid_options", "options: " + validation_message(e.errors())) from None
    for name, limit, setting in (("diffusion_steps", limits.diffusion_steps, "MAX_DIFFUSION_STEPS"),
                                 ("hypotheses", limits.hypotheses, "MAX_HYPOTHESES")):
        value = getattr(options, name)
        if value is not None and value > limit:
            raise _over(f"options.{name}={value}; this server allows at most {limit} "
                        f"(VIDPOSE_{setting})")
    boxes = None
    if options.boxes is not None:
        rows = [(int(frame), i, *box.bbox) for frame, frame_boxes in options.boxes.items()
                for i, box in enumerate(frame_boxes)]
        boxes = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    stored = json.dumps(options.stored(), separators=(",", ":"))
    return ParsedOptions(options.model_copy(update={"boxes": None}), stored, boxes)


# ------------------------------------------------------------------------------ off the event loop
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:  # spawn: never fork a process that runs threads (uvicorn's threadpool)
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _drop_pool(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


async def parse_options_async(raw: str | None, limits: OptionLimits) -> ParsedOptions:
    """parse_options without blocking the event loop; raises ApiError."""
    try:
        if raw is None or len(raw) <= INLINE_BYTES:
            return await run_in_threadpool(parse_options, raw, limits)
        pool = _get_pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, parse_options, raw, limits)
        except BrokenProcessPool:  # the child died (OOM kill?): a fresh pool, one more try
            _drop_pool(pool)
            return await asyncio.get_running_loop().run_in_executor(_get_pool(), parse_options, raw, limits)
    except OptionsError as e:
        raise e.api_error() from None


def _name(row) -> str:
    frame, index, x, y, w, h = row
    return f"boxes[{int(frame)}][{int(index)}] [{x:g}, {y:g}, {w:g}, {h:g}]"


def check_boxes_fit(boxes: np.ndarray | None, width: int, height: int, frames: int) -> None:
    """422 `boxes_outside_clip` naming the boxes of frames the clip does not have, or wholly outside
    the frame (a box that overlaps the frame is fine: the crop is clipped)."""
    if boxes is None or not len(boxes):
        return
    frame, _, x, y, w, h = boxes.T
    beyond = np.flatnonzero(frame >= frames)
    if len(beyond):
        named = sorted({int(f) for f in frame[beyond]})
        more = f" (and {len(named) - _NAMED} more)" if len(named) > _NAMED else ""
        raise ApiError(422, "boxes_outside_clip", f"options.boxes lists frames the clip does not have: "
                       f"{', '.join(map(str, named[:_NAMED]))}{more}; the clip has {frames} frames "
                       f"(0-{frames - 1})")
    outside = np.flatnonzero((x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0))
    if len(outside):
        named = "; ".join(_name(boxes[i]) for i in outside[:_NAMED])
        more = f" (and {len(outside) - _NAMED} more)" if len(outside) > _NAMED else ""
        raise ApiError(422, "boxes_outside_clip", f"{len(outside)} box(es) lie wholly outside the "
                       f"{width}x{height} frame: {named}{more}")
