"""One claimed job on a worker: decode -> crops -> windows -> shared batcher; results -> Redis.

A JobRun owns one thread and gets a small JobContext (queue, batcher, settings,
detectors, worker id), not the Worker. It streams the clip through a
WindowBuilder, submits ready windows to the shared DynamicBatcher with its own
inbox as the reply queue (at most `max_inflight` at once: backpressure keeps
memory bounded on long clips), takes the outputs off that inbox on its own
thread (releasing the windows' crop pins there: no lock), and turns them
into result frames, written (idempotent HSET per frame) as soon as every person
in a frame is done. Outcomes: succeeded, failed (invalid_video, invalid_options,
internal_error), cancelled (client), requeued (worker draining), lost (another
worker took the entry over, or Redis stayed away past a drain: the entry stays
pending and is reclaimed).

Redis outages never fail a job: every Redis call of the job waits for Redis to come
back (queue_recovery.through_outages). A job taken over from a dead worker resumes:
the frames already stored are skipped (their windows are not run); detection and
tracking still run from frame 0 so track ids and the windows next to the resume
point come out as in an uninterrupted run.

Progress: frames_done (frames whose poses are stored) goes up with each flush of results; before the
first windows are ready the job is decoding and detecting, which frames_detected shows: the frames
whose people this attempt has found (detected and tracked), written after a detector batch at most
every DETECTED_S, with every flush of results (in the same Lua step, so frames_detected >= frames_done
on a job run once) and once more when decoding ends. A resumed job counts it up again from 0 (its
worker re-runs detection from frame 0), so there it can trail the frames stored by the dead worker.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from service import contract
from service.metrics import FRAMES_PROCESSED, JOB_DURATION, JOB_QUEUE_WAIT, JOBS_FINISHED
from service.queue_recovery import REDIS_DOWN, Recovery, through_outages
from service.worker.boxes import InvalidOptions
from service.worker.people import people_source
from service.worker.pipeline import to_instance
from service.worker.video import InvalidVideo, VideoReader
from service.worker.windows import Window, WindowBuilder

if TYPE_CHECKING:
    from service.queue import JobQueue
    from service.settings import Settings
    from service.worker.batcher import DynamicBatcher
    from service.worker.engine import Engine
    from service.worker.people import DetectorPool

log = logging.getLogger(__name__)

FLUSH_FRAMES = 64  # write results at least every this many finished frames ...
FLUSH_S = 0.25  # ... or this often
DETECTED_S = 0.5  # detection progress (frames_detected) is written at most this often between flushes
CANCEL_CHECK_S = 0.1  # how often a running job polls its status for a client cancel (one HGET)
REQUEUE_WAIT_S = 10.0  # a draining worker waits this long for Redis to requeue a job, then leaves it pending


class _Stop(Exception):
    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


@dataclass
class _FrameSlot:
    timestamp_s: float
    pending: int  # people in this frame whose window has not come back yet
    instances: list = field(default_factory=list)


@dataclass(frozen=True)
class JobContext:
    """What a job needs from the worker that runs it (and nothing else of it)."""

    queue: JobQueue
    batcher: DynamicBatcher
    settings: Settings
    detectors: DetectorPool
    worker_id: str


class JobRun:
    def __init__(self, ctx: JobContext, engine: Engine, entry_id: str, job_id: str):
        self.ctx = ctx
        self.queue = ctx.queue
        self.model = engine.name
        self.entry_id = entry_id
        self.job_id = job_id
        self.engine = engine
        self.batcher = ctx.batcher
        self.max_inflight = max(2 * ctx.settings.worker_max_batch, 8)
        self.inbox: queue_mod.Queue = queue_mod.Queue()  # the batcher's reply queue for this job
        self._builder: WindowBuilder | None = None
        self.outcome: str | None = None
        self._abort = threading.Event()  # set by the worker: drain (requeue) or lost entry
        self._abort_reason = "requeued"
        self._thread = threading.Thread(target=self._main, name=f"job-{job_id[:8]}", daemon=True)
        self._inflight = 0
        self._slots: dict[int, _FrameSlot] = {}
        self._ready: dict[int, dict] = {}
        self._last_flush = time.monotonic()
        self._last_cancel_check = time.monotonic()
        self.frames_written = 0
        self.frames_detected = 0  # frames whose people this attempt has found
        self._detected_reported = 0
        self._last_detected_write = time.monotonic()
        self.frames_resumed = 0  # frames a previous attempt stored, skipped by this one
        self._stored: set[int] = set()
        self.started = time.monotonic()
        self.width = self.height = 0

    # -- worker-facing -----------------------------------------------------------------------
    def start(self) -> JobRun:
        self._thread.start()
        return self

    def abort(self, reason: str = "requeued") -> None:
        """Stop soon without finishing: "requeued" gives the job back, "lost" just lets go."""
        self._abort_reason = reason
        self._abort.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self.outcome is not None and not self._thread.is_alive()

    # -- the job thread -------------------------------------------------------------------------
    def _main(self) -> None:
        status, code, message = "failed", "internal_error", ""
        try:
            status, code, message = self._run()
        except _Stop as stop:
            status = stop.outcome
        except InvalidVideo as e:
            status, code, message = "failed", InvalidVideo.code, str(e)
        except InvalidOptions as e:
            status, code, message = "failed", InvalidOptions.code, str(e)
        except REDIS_DOWN as e:  # only once aborted (drain, entry lost): never fail the job for it
            log.warning("job %s: stopped while redis is unreachable (%s)", self.job_id, e)
            status = self._abort_reason
        except Exception as e:  # a bug or a broken model: fail the job, keep the worker
            log.exception("job %s failed", self.job_id)
            status, code, message = "failed", "internal_error", f"{type(e).__name__}: {e}"
        finally:
            self._wind_down()
        try:
            self._conclude(status, code, message)
        except Exception:  # Redis gone past a drain (or a bug): leave the entry pending; a worker reclaims it
            log.exception("job %s: could not record outcome %s", self.job_id, status)
            self.outcome = "lost"

    def _conclude(self, status: str, code: str, message: str) -> None:
        q = self.queue
        if status == "requeued":
            give_up = time.monotonic() + REQUEUE_WAIT_S
            stop = lambda: time.monotonic() > give_up  # noqa: E731
            self._flush(force=True, stop=stop)
            self._redis(q.requeue, self.job_id, self.model, self.entry_id, stop=stop)
            self.outcome = "requeued"
            log.info("job %s requeued (worker draining)", self.job_id)
            return
        if status == "lost":
            self.outcome = "lost"
            log.warning("job %s was taken over by another worker", self.job_id)
            return
        if status in ("succeeded", "cancelled"):
            changed = self._redis(q.finish, self.job_id, self.model, self.entry_id, status)
        else:
            changed = self._redis(q.finish, self.job_id, self.model, self.entry_id, "failed", code,
                                  message[:1000])
        if changed:
            JOBS_FINISHED.labels(status).inc()
            JOB_DURATION.labels(self.model).observe(time.monotonic() - self.started)
        self.outcome = status
        log.info("job %s %s%s", self.job_id, status, f" ({code}: {message})" if status == "failed" else "")

    def _options(self, stored: dict) -> tuple[dict, int, Any, int | None]:
        """The job's options, loaded as the API validated them (contract.JobOptions), and checked
        against what only this worker knows: its model's window."""
        try:
            options = contract.JobOptions.model_validate(stored)
        except ValidationError as e:
            raise InvalidOptions("options: " + "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None
        eng = self.engine
        if options.window is not None and options.window != eng.window:
            raise InvalidOptions(f"model {eng.name!r} uses window T={eng.window}; "
                                 f"got window={options.window}")
        max_frames = self.ctx.settings.max_frames
        if options.max_frames is not None:
            max_frames = min(max_frames, options.max_frames)
        return (options.stored(), eng.window, eng.decode_options(options.diffusion_steps, options.hypotheses),
                max_frames)

    def _redis(self, fn, *args, stop=None, **kwargs):
        """A queue call that waits out Redis outages (until the job is aborted, or `stop()`)."""
        return through_outages(fn, *args, stop=stop or self._abort.is_set, what=f"job {self.job_id}",
                               **kwargs)

    def _run(self) -> tuple[str, str, str]:
        q = self.queue
        job = self._redis(q.get_job, self.job_id)
        if job is None or job["status"] not in ("queued", "running"):
            return "cancelled", "", ""  # cancelled or expired before we started: just ack the entry
        options, window, dopts, max_frames = self._options(job["options"])
        people_for = people_source(options, self.ctx.settings, self.ctx.detectors)
        blob = Path(job["blob"])
        if not blob.is_absolute():
            blob = Path(self.ctx.settings.blob_dir) / blob
        with VideoReader(blob, max_frames) as reader:
            info = reader.info
            self.width, self.height = info.width, info.height
            if not self._redis(q.start, self.job_id, self.ctx.worker_id, info.frames, info.to_dict()):
                return "cancelled", "", ""
            self._stored = self._redis(Recovery(q).stored_frames, self.job_id)
            if self._stored:
                log.info("job %s resumes: %d of %d frames already stored", self.job_id, len(self._stored),
                         info.frames)
            if job.get("created_at"):
                JOB_QUEUE_WAIT.labels(self.model).observe(max(0.0, time.time() - job["created_at"]))
            builder = WindowBuilder(self.job_id, window, self.engine.input_spec,
                                    batch_key=(self.model, dopts), recrop=self.engine.recrop_drop > 0)
            self._builder = builder
            pending = []  # frames waiting for the next detector batch
            for frame in reader:
                pending.append(frame)
                if len(pending) >= people_for.batch:
                    self._add_frames(builder, people_for, pending)
                    pending = []
            if pending:
                self._add_frames(builder, people_for, pending)
            self._report_detected(force=True)
            self._submit(self._unstored(builder.finish()))
            n = reader.frames_read
        if n != info.frames:  # the container's count was off: the decoded count is the truth
            log.info("job %s: container said %d frames, decoded %d", self.job_id, info.frames, n)
            fixed = {**info.to_dict(), "frames": n}
            self._redis(q.set_frames_total, self.job_id, n, fixed)
        while self._inflight > 0 or self._ready:
            self._pump(block=True)
            self._flush(force=self._inflight == 0)
        missing = [i for i, s in self._slots.items() if s.pending > 0]
        if missing or len(self._slots) != n:
            raise RuntimeError(f"internal: frames without results {missing[:10]}")
        return "succeeded", "", ""

    def _add_frames(self, builder: WindowBuilder, people_for, frames: list) -> None:
        """Find the people of a batch of frames (one detector call), then crop them into windows."""
        self._check_stop()
        boxes = people_for.boxes([f.index for f in frames], [f.rgb for f in frames])
        self.frames_detected += len(frames)
        self._report_detected()
        for frame, people in zip(frames, boxes, strict=True):
            stored = frame.index in self._stored
            self._slots[frame.index] = _FrameSlot(frame.timestamp_s, 0 if stored else len(people))
            if stored:
                self.frames_resumed += 1
            elif not people:
                self._frame_ready(frame.index)
            self._submit(self._unstored(builder.add_frame(frame.index, frame.rgb, people)))
            self._pump(block=False)
            while self._inflight >= self.max_inflight:
                self._pump(block=True)

    def _unstored(self, windows: list[Window]) -> list[Window]:
        """The windows whose key frame is not stored yet; the others are released unrun (their crops are
        then encoded only if a window still to run needs them)."""
        if not self._stored:
            return windows
        keep = []
        for w in windows:
            if w.key_frame in self._stored:
                self._builder.release(w)
            else:
                keep.append(w)
        return keep

    def _submit(self, windows: list[Window]) -> None:
        if windows:
            self._inflight += len(windows)
            self.batcher.submit(windows, self.inbox)

    def _frame_ready(self, index: int) -> None:
        slot = self._slots[index]
        self._ready[index] = contract.result_frame(index, slot.timestamp_s, slot.instances)
        slot.instances = []  # the ready frame owns them now; the slot only tracks completion

    def _pump(self, block: bool) -> None:
        """Take finished windows off the inbox, write ready frames when due, watch for stops."""
        try:
            item = self.inbox.get(timeout=0.05) if block else self.inbox.get_nowait()
        except queue_mod.Empty:
            item = None
        while item is not None:
            kind, windows, payload = item
            self._inflight -= len(windows)
            self._release(windows)
            if kind == "error":
                raise payload
            if kind == "done":
                for w, kps in zip(windows, payload, strict=True):
                    slot = self._slots[w.key_frame]
                    slot.instances.append(to_instance(w, kps, self.engine, self.width, self.height))
                    slot.pending -= 1
                    if slot.pending == 0:
                        self._frame_ready(w.key_frame)
            try:
                item = self.inbox.get_nowait()
            except queue_mod.Empty:
                item = None
        self._flush()
        self._check_stop()

    def _release(self, windows: list[Window]) -> None:
        """Windows back from the batcher (run or dropped): their crops' pins drop, on this thread."""
        if self._builder is not None:
            for w in windows:
                self._builder.release(w)

    def _flush(self, force: bool = False, stop=None) -> None:
        if not self._ready:
            return
        if not force and len(self._ready) < FLUSH_FRAMES and time.monotonic() - self._last_flush < FLUSH_S:
            return
        detected = self.frames_detected if self.frames_detected != self._detected_reported else None
        self._redis(self.queue.write_frames, self.job_id, self._ready, frames_detected=detected, stop=stop)
        if detected is not None:
            self._detected_reported = detected
            self._last_detected_write = time.monotonic()
        frames, self._ready = self._ready, {}
        self.frames_written += len(frames)
        FRAMES_PROCESSED.labels(self.model).inc(len(frames))
        self._last_flush = time.monotonic()

    def _report_detected(self, force: bool = False) -> None:
        """Write frames_detected when it moved and DETECTED_S passed since the last write (or `force`)."""
        if self.frames_detected == self._detected_reported:
            return
        if not force and time.monotonic() - self._last_detected_write < DETECTED_S:
            return
        self._redis(self.queue.set_frames_detected, self.job_id, self.frames_detected)
        self._detected_reported = self.frames_detected
        self._last_detected_write = time.monotonic()

    def _check_stop(self) -> None:
        if self._abort.is_set():
            raise _Stop(self._abort_reason)
        now = time.monotonic()
        if now - self._last_cancel_check >= CANCEL_CHECK_S:
            self._last_cancel_check = now
            if self._redis(self.queue.is_cancelled, self.job_id):
                raise _Stop("cancelled")

    def _wind_down(self) -> None:
        """Drop this job's queued windows and wait for the batch in flight (at most one) to return."""
        self.batcher.cancel(self.job_id)
        deadline = time.monotonic() + 120
        while self._inflight > 0 and time.monotonic() < deadline:
            try:
                kind, windows, _ = self.inbox.get(timeout=0.1)
            except queue_mod.Empty:
                continue
            self._inflight -= len(windows)
            self._release(windows)
