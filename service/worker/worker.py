"""The worker process: load models once, warm up, then claim and run jobs until told to stop.

Threads: the main thread claims jobs (XREADGROUP; XAUTOCLAIM for entries
idle on dead workers) and handles signals; one scheduler thread owns batching
and the models (batcher.py, engine.py); one thread per held job decodes and
writes results (job.py); a heartbeat thread keeps the worker registered and
keeps its held entries fresh so live workers' jobs are never reclaimed.

SIGTERM / SIGINT drain: stop claiming, let held jobs finish for up to
`drain_timeout_s`, requeue the rest, deregister, exit 0. A second signal
skips the wait.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict

from service.metrics import (
    BATCH_SIZE,
    BATCH_WAIT,
    GPU_MEMORY_ALLOCATED,
    GPU_MEMORY_MAX_ALLOCATED,
    GPU_MEMORY_RESERVED,
    JOBS_FINISHED,
    MODEL_INFO,
    WORKER_HEARTBEAT,
    WORKER_JOBS_HELD,
    WORKER_UP,
)
from service.queue import JobQueue
from service.queue_recovery import REDIS_DOWN, Recovery, through_outages
from service.settings import Settings
from service.stop_flag import StopFlag
from service.worker.batcher import DynamicBatcher
from service.worker.engine import Engine
from service.worker.http import WorkerHTTP
from service.worker.job import JobContext, JobRun
from service.worker.people import DetectorPool, default_detector
from service.worker.pipeline import run_windows
from service.worker.windows import Window

log = logging.getLogger("vidpose.worker")


class MetricsPortInUse(RuntimeError):
    """worker_metrics_port is held by another process."""


def usable_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def auto_threads() -> int:
    """torch threads when worker_threads is 0: all usable cores but one. The spare core decodes and
    crops the next frames while the model runs; giving torch every core makes its threads wait on
    each other whenever decoding (or anything else) takes a core, which on small machines costs far
    more than the extra thread gains (measured on 2 busy shared cores: a batch-1 encode took 1.2 s with
    2 threads, 37 ms with 1)."""
    return max(1, usable_cores() - 1)


class Worker:
    def __init__(self, settings: Settings, models: list[str] | None = None, redis_client=None,
                 worker_id: str | None = None, drain_timeout_s: float = 30.0,
                 metrics_host: str | None = None):
        if not settings.redis_url and redis_client is None:
            raise RuntimeError("the worker needs Redis: set VIDPOSE_REDIS_URL (or use `vidpose serve`)")
        self.settings = settings
        self.model_args = list(models or settings.models)
        self.host = socket.gethostname()
        self.worker_id = worker_id or f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.drain_timeout_s = drain_timeout_s
        self.metrics_host = metrics_host or settings.api_host
        if redis_client is None:
            import redis

            redis_client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
        self.redis = redis_client
        self.queue = JobQueue(redis_client, settings)
        self.recovery = Recovery(self.queue)
        self.engines: dict[str, Engine] = {}
        self.detectors = DetectorPool(settings)  # person detectors, shared by the jobs this worker holds
        self.runs: dict[tuple[str, str], JobRun] = {}  # (model, entry_id) -> run
        self._runs_lock = threading.Lock()
        # Set by signal handlers, so lock-free flags, not threading.Events (see service/stop_flag.py).
        self.stopping = StopFlag()
        self._force = StopFlag()
        self._signals: list[int] = []  # received, logged by the main thread (a handler must not log)
        self._started_at = time.time()
        self.http: WorkerHTTP | None = None
        self.batcher = DynamicBatcher(
            settings.worker_max_batch, settings.worker_max_wait_ms / 1000.0, self._run_batch,
            observe=self._observe)
        self.job_context = JobContext(self.queue, self.batcher, settings, self.detectors, self.worker_id)
        self._last_reclaim = 0.0
        self._last_sweep = 0.0
        self.jobs_done = 0

    # -- setup -------------------------------------------------------------------------------
    def load(self) -> None:
        import torch

        torch.set_num_threads(self.settings.worker_threads or auto_threads())
        for arg in self.model_args:
            eng = Engine.load(arg, self.settings.models_dir, self.settings.worker_device,
                              self.settings.worker_cpu_runtime)
            if eng.name in self.engines:
                raise ValueError(f"model {eng.name!r} given twice")
            self.engines[eng.name] = eng
        # Build the default person detector now: a bad onnx file or missing NanoDet weights (when named)
        # stop the worker at start, not a job later; auto without the NanoDet package logs a warning.
        self.detectors.default()
        for eng in self.engines.values():
            took = eng.warmup(min(4, self.settings.worker_max_batch))
            log.info("model %s (version %s) warm on %s in %.2fs (torch threads %d)", eng.name, eng.version,
                     eng.device, took, torch.get_num_threads())
            MODEL_INFO.labels(eng.name, eng.version, eng.device.type).set(1)

    @property
    def models(self) -> list[str]:
        return list(self.engines)

    @property
    def ready(self) -> bool:
        warm = bool(self.engines) and all(e.warm for e in self.engines.values())
        return warm and not self.stopping.is_set()

    def _readiness(self) -> tuple[bool, dict]:
        detail = {"worker_id": self.worker_id, "models": self.models, "draining": self.stopping.is_set()}
        return self.ready, detail

    def info(self) -> dict:
        first = next(iter(self.engines.values()), None)
        return {"models": self.models, "device": first.device.type if first else "", "pid": os.getpid(),
                "host": self.host, "started_at": self._started_at, "jobs": len(self.runs),
                "max_batch": self.settings.worker_max_batch, "max_jobs": self.settings.worker_max_jobs,
                "detectors": self.detectors.available(), "default_detector": default_detector(self.settings)}

    # -- batcher callbacks (scheduler thread) -----------------------------------------------------
    def _run_batch(self, windows: list[Window]):
        model, dopts = windows[0].batch_key
        max_encode = max(self.settings.worker_max_batch, 8)
        return run_windows(self.engines[model], windows, dopts, max_encode=max_encode)

    def _observe(self, batch: list[Window], wait_s: float) -> None:
        model = batch[0].batch_key[0]
        BATCH_SIZE.labels(model).observe(len(batch))
        BATCH_WAIT.labels(model).observe(wait_s)

    # -- heartbeat --------------------------------------------------------------------------------
    def _touch_held(self) -> None:
        """Reset the idle time of entries we hold (XCLAIM to ourselves, JUSTID: no delivery count),
        so XAUTOCLAIM on other workers takes only entries of dead workers. An entry that another
        worker took over meanwhile is let go."""
        with self._runs_lock:
            held = list(self.runs.items())
        for (model, entry_id), run in held:
            if run.outcome is None and not self.queue.touch(self.worker_id, model, entry_id):
                run.abort("lost")

    def _heartbeat_once(self) -> None:
        self.queue.heartbeat(self.worker_id, self.info())
        self.recovery.note_held(self.worker_id, len(self.runs))
        WORKER_HEARTBEAT.set(time.time())
        self._touch_held()

    def _heartbeat_loop(self) -> None:
        while not self._hb_stop.wait(self.settings.worker_heartbeat_s):
            try:
                self._heartbeat_once()
            except Exception as e:
                log.warning("heartbeat failed: %s", e)

    def _update_gauges(self) -> None:
        WORKER_JOBS_HELD.set(len(self.runs))
        for eng in self.engines.values():
            if eng.device.type == "cuda":
                import torch

                dev = str(eng.device)
                GPU_MEMORY_ALLOCATED.labels(dev).set(torch.cuda.memory_allocated(eng.device))
                GPU_MEMORY_RESERVED.labels(dev).set(torch.cuda.memory_reserved(eng.device))
                GPU_MEMORY_MAX_ALLOCATED.labels(dev).set(torch.cuda.max_memory_allocated(eng.device))

    # -- claiming -----------------------------------------------------------------------------------
    def _reap(self) -> None:
        with self._runs_lock:
            for key in [k for k, r in self.runs.items() if r.done]:
                self.runs.pop(key)
                self.jobs_done += 1

    def _take(self, entries: list[tuple[str, str, str]], reclaimed: bool) -> None:
        if entries:  # before the runs start: if this worker dies, a strike is shared by all it held
            self._redis(self.recovery.note_held, self.worker_id, len(self.runs) + len(entries))
        for model, entry_id, job_id in entries:
            if (model, entry_id) in self.runs:
                continue  # our own entry came back through XAUTOCLAIM: we still run it
            if reclaimed:  # taken over from a dead worker: a strike unless its attempt stored frames
                strikes = self._redis(self.recovery.strike, job_id)
                limit = self.settings.worker_max_deliveries
                if strikes >= limit - 1e-3:
                    reason = (f"its workers died without storing a frame of it: {strikes:g} strikes "
                              f"(worker_max_deliveries {limit})")
                    if self._redis(self.queue.dead_letter, job_id, model, entry_id, reason):
                        JOBS_FINISHED.labels("failed").inc()
                    log.warning("job %s dead-lettered: %s", job_id, reason)
                    continue
                log.info("job %s reclaimed from a dead worker (entry %s, strikes %g)", job_id, entry_id,
                         max(strikes, 0))
            run = JobRun(self.job_context, self.engines[model], entry_id, job_id)
            with self._runs_lock:
                self.runs[(model, entry_id)] = run
            run.start()

    def _redis(self, fn, *args, **kwargs):
        """A queue call of the claim loop that waits out Redis outages (until the worker stops): an
        entry taken must reach a run, or its strike would be counted again at the next reclaim."""
        return through_outages(fn, *args, stop=self.stopping.is_set, what=f"worker {self.worker_id}",
                               **kwargs)

    def _claim_once(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= self.settings.worker_ttl_s:  # consumer-group hygiene
            self._last_sweep = now
            self.recovery.remove_dead_consumers(self.models)
        free = self.settings.worker_max_jobs - len(self.runs)
        if free <= 0:
            time.sleep(0.05)
            return
        # Look for entries of dead workers a few times per reclaim period.
        if now - self._last_reclaim >= min(1.0, self.settings.worker_reclaim_idle_ms / 4000.0):
            self._last_reclaim = now
            got = self.queue.reclaim(self.worker_id, self.models, self.settings.worker_reclaim_idle_ms, free)
            if got:
                self._take(got, reclaimed=True)
                return
        got = self.queue.claim(self.worker_id, self.models, free, block_ms=200)
        self._take(got, reclaimed=False)

    # -- lifecycle -------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def handle(signum, frame):  # no locks, no logging: it runs between any two bytecodes of main
            self._signals.append(signum)
            if self.stopping.is_set():
                self._force.set()
            else:
                self.stopping.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def bind_http(self) -> None:
        """Bind worker_metrics_port (served once the worker runs). A port another process holds (a second
        worker on the host) raises MetricsPortInUse naming the setting; 0 turns the endpoint off."""
        if self.http is not None or not self.settings.worker_metrics_port:
            return
        port = self.settings.worker_metrics_port
        try:
            self.http = WorkerHTTP(self.metrics_host, port, self._readiness,
                                   before_scrape=self._update_gauges)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise MetricsPortInUse(
                f"worker metrics port {self.metrics_host}:{port} is already in use (another worker on this "
                "host?): give each worker its own VIDPOSE_WORKER_METRICS_PORT, or 0 to turn it off") from None

    def run(self) -> int:
        """Load, register, serve jobs until stopping is set; then drain. Returns the exit code."""
        if not self.engines:
            self.load()
        self.queue.ensure_groups(self.models)
        for eng in self.engines.values():
            info = {**eng.info(self.detectors.available()), "worker": self.worker_id,
                    "registered_at": time.time()}
            self.queue.register_model(eng.name, info)
        self.bind_http()
        if self.http is not None:
            self.http.start()
            log.info("worker metrics on http://%s:%d/metrics", self.metrics_host, self.http.port)
        self._heartbeat_once()
        self._hb_stop = threading.Event()
        hb = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        hb.start()
        self.batcher.start()
        WORKER_UP.set(1)
        log.info("worker %s ready: models %s, max_batch %d, max_wait %.0f ms, max_jobs %d", self.worker_id,
                 self.models, self.settings.worker_max_batch, self.settings.worker_max_wait_ms,
                 self.settings.worker_max_jobs)
        try:
            while not self.stopping.is_set():
                try:
                    self._reap()
                    self._claim_once()
                except REDIS_DOWN as e:  # Redis restarting: keep the worker and its jobs, retry shortly
                    log.warning("claim loop: redis unreachable (%s)", e)
                    self.stopping.wait(0.2)
                except Exception:
                    log.exception("claim loop error")
                    self.stopping.wait(1.0)
        finally:
            WORKER_UP.set(0)
            self._drain()
            self._hb_stop.set()
            hb.join(5)
            self.batcher.stop()
            try:
                self.queue.deregister(self.worker_id)
                self.recovery.forget(self.worker_id)
            except Exception as e:  # Redis already gone: its registration expires by TTL anyway
                log.warning("deregister failed: %s", e)
            if self.http:
                self.http.stop()
        log.info("worker %s stopped (%d jobs handled)", self.worker_id, self.jobs_done)
        return 0

    def _drain(self) -> None:
        if self._signals:
            log.info("signal %s: draining (up to %.0fs)", signal.Signals(self._signals[0]).name,
                     self.drain_timeout_s)
        deadline = time.monotonic() + self.drain_timeout_s
        while self.runs and time.monotonic() < deadline and not self._force.is_set():
            self._reap()
            time.sleep(0.05)
        if self._force.is_set():
            log.warning("second signal: requeueing held jobs now")
        with self._runs_lock:
            left = list(self.runs.values())
        for run in left:
            run.abort("requeued")
        for run in left:
            run.join(30)
        self._reap()
        outcomes = defaultdict(int)
        for run in left:
            outcomes[run.outcome] += 1
        if left:
            log.info("drain: %s", dict(outcomes))

    def stop(self) -> None:
        self.stopping.set()
