"""Chaos run: API + workers + Redis (AOF) on loopback; workers are killed (SIGKILL) and Redis is restarted
at random while jobs run. Every job must succeed, with every frame stored once and byte-identical to a
run without faults (issue #14).

    python bench/chaos.py --kills 20 --redis-restarts 0,0.01,0.05,3 --submissions 2000 --clients 50

1. Reference: each distinct job (clip + options) runs once with no fault.
2. Faults: jobs are kept running (`--active` at once, at least `--jobs` in all) while the faults are
   injected one at a time, in a random (seeded) order, each once a worker is ready and holds a running
   job: kill -9 a worker that holds one (a fresh worker replaces it at once), or stop Redis (SIGTERM: it
   writes its AOF), wait the given time and start it again on the same port and folder.
3. Load (`--submissions` > 0): `--clients` threads POST /estimate, honouring 429 + Retry-After, while the
   faults of phase 2 are repeated; counted: 5xx answers, connection resets, jobs lost or failed.
Then every job is checked against its reference, and the consumer group must hold only live workers.

tests/e2e/test_chaos.py runs phases 1-2 at a small size in the suite; docs/benchmarks.md has the
figures of a larger run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.embedded_redis import RedisServer  # noqa: E402
from service.queue import GROUP  # noqa: E402
from service.queue_recovery import REDIS_DOWN, through_outages  # noqa: E402

SHARED = Path(os.environ.get("VIDPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))
TERMINAL = ("succeeded", "failed", "cancelled")
TWO_PEOPLE = [[10, 10, 60, 80], [80, 10, 60, 80]]
# Worker settings of a chaos stack: reclaim after 3 s idle, heartbeats fast enough to keep live entries.
CHAOS_ENV = {"VIDPOSE_WORKER_RECLAIM_IDLE_MS": 3000, "VIDPOSE_WORKER_HEARTBEAT_S": 0.3,
             "VIDPOSE_WORKER_TTL_S": 2}


@dataclass(frozen=True)
class Spec:
    """One distinct job: a clip, its frame count and the options sent with it."""

    clip: Path
    frames: int
    options: dict


@dataclass
class Report:
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0  # not finished by the deadline
    wrong_frames: int = 0  # jobs whose stored frames are not exactly 0..n-1
    mismatched: int = 0  # jobs whose result differs from the reference
    kills: int = 0  # each of a worker that had stored frames of a job it held
    redis_restarts: list = field(default_factory=list)
    submissions: int = 0
    answers_429: int = 0
    answers_503: int = 0  # 503 redis_unavailable + Retry-After (the API while Redis restarts)
    answers_5xx: int = 0  # any other 5xx
    resets: int = 0
    stale_consumers: int = 0  # consumers left in the group that are not live workers
    seconds: float = 0.0
    failures: list = field(default_factory=list)

    def ok(self) -> bool:
        return (self.succeeded == self.jobs and not (self.failed or self.lost or self.wrong_frames
                or self.mismatched or self.answers_5xx or self.resets or self.stale_consumers))


def make_specs(workdir: Path, scale: int = 1) -> list[Spec]:
    """Three kinds of job on real footage: two client boxes per frame (two tracks), one full-frame box,
    and the detector + tracker (nanodet when its package is present, else hog) on a street scene."""
    from tests.conftest import _write_clip

    videos = SHARED / "videos"
    a = _write_clip(workdir / "soccer.mp4", videos / "soccer.mp4", 48 * scale)
    b = _write_clip(workdir / "street.mp4", videos / "street_walk.mp4", 40 * scale)
    c = _write_clip(workdir / "people.mp4", videos / "vtest.avi", 16 * scale, size=(256, 192))
    return [Spec(a, 48 * scale, {"boxes": [TWO_PEOPLE] * (48 * scale)}),
            Spec(b, 40 * scale, {"detector": "full-frame"}),
            Spec(c, 16 * scale, {})]


class Chaos:
    """Faults and checks on a running stack (tests/e2e/conftest.py: ServiceStack) whose Redis is `redis`."""

    def __init__(self, stack, redis: RedisServer, seed: int = 0, log=print):
        self.stack = stack
        self.redis = redis
        self.rng = random.Random(seed)
        self.q = stack.queue()
        self.log = log
        self.report = Report()
        self.jobs: list[tuple[str, int]] = []  # (job id, spec index)
        self._lock = threading.Lock()

    # -- faults ---------------------------------------------------------------------------------
    def _status(self, job_id: str) -> dict:
        return through_outages(self.q.get_job, job_id) or {}

    def busy_workers(self) -> list[str]:
        """Live, ready workers that have stored frames of a job they hold (more than `mark`, the frames
        stored when their delivery began): a kill then hits work in progress, and the jobs get the chance
        to progress between kills that a real fleet gives them (a worker killed each time before it can
        store a frame is what a job that kills its workers looks like: docs/architecture.md)."""
        with self._lock:
            jobs = [j for j, _ in self.jobs]
        holders = set()
        for job_id in jobs:
            j = self._status(job_id)
            mark = int(through_outages(self.q.r.hget, self.q.job_key(job_id), "mark") or 0)
            if j.get("status") == "running" and j.get("frames_done", 0) > mark:
                holders.add(j["worker"])
        return [w for w in self.stack.live_workers() if w in holders and self.stack.worker_ready(w)]

    def kill_one(self) -> bool:
        """kill -9 a random busy worker (False: none is busy now) and start a fresh one in its place."""
        busy = self.busy_workers()
        if not busy:
            return False
        victim = self.rng.choice(busy)
        proc = self.stack.workers[victim][0]
        proc.kill()  # SIGKILL: no drain, no ack, no deregister
        proc.wait()
        self.report.kills += 1
        self.stack.start_worker()
        self.log(f"kill -9 {victim}; replacement started")
        return True

    def restart_redis(self, down_s: float) -> None:
        """Call from the main thread: redis-server gets SIGTERM when the thread that started it exits
        (PR_SET_PDEATHSIG, service/embedded_redis.py)."""
        self.redis.stop()
        time.sleep(down_s)
        self.redis.start()
        self.report.redis_restarts.append(down_s)
        self.log(f"redis restarted ({down_s * 1000:.0f} ms down + restart)")

    def wait_busy(self, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.busy_workers():
                return True
            time.sleep(0.1)
        return False

    def inject(self, kills: int, restarts: list[float], between=(0.5, 3.0), top_up=None) -> None:
        """The faults in a random order, each once a worker is busy (top_up() first keeps jobs coming)."""
        faults = [("kill", 0.0)] * kills + [("redis", d) for d in restarts]
        self.rng.shuffle(faults)
        for kind, down in faults:
            while True:
                if top_up:
                    top_up()
                if not self.wait_busy():
                    self.log(f"{kind}: skipped (no worker busy for 120 s)")
                    break
                time.sleep(self.rng.uniform(*between))
                if kind == "redis":
                    self.restart_redis(down)
                    break
                if self.kill_one():
                    break

    # -- jobs -----------------------------------------------------------------------------------
    def add(self, job_id: str, spec_index: int) -> None:
        with self._lock:
            self.jobs.append((job_id, spec_index))

    def active(self) -> int:
        with self._lock:
            jobs = [j for j, _ in self.jobs]
        return sum(self._status(j).get("status") not in TERMINAL for j in jobs)

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.active():
            time.sleep(0.2)

    def frames(self, job_id: str) -> dict:
        return through_outages(self.q.r.hgetall, self.q.frames_key(job_id))

    def reference(self, specs: list[Spec], timeout: float = 300) -> list[dict]:
        ids = [self.stack.submit(s.clip, s.options) for s in specs]
        for job_id in ids:
            j = self.stack.wait(job_id, timeout=timeout)
            if j["status"] != "succeeded":
                raise RuntimeError(f"reference job failed: {j}")
        return [self.frames(j) for j in ids]

    def verify(self, specs: list[Spec], refs: list[dict]) -> Report:
        r = self.report
        r.jobs = len(self.jobs)
        for job_id, k in self.jobs:
            j = self._status(job_id)
            status = j.get("status")
            r.succeeded += status == "succeeded"
            r.failed += status in ("failed", "cancelled")
            r.lost += status not in TERMINAL
            if status != "succeeded":
                r.failures.append({"job": job_id, "status": status, "error": j.get("error_code"),
                                   "message": j.get("error_message")})
                continue
            got = self.frames(job_id)
            n = specs[k].frames
            if sorted(int(i) for i in got) != list(range(n)) or j["frames_done"] != n:
                r.wrong_frames += 1
            elif got != refs[k]:
                r.mismatched += 1
        return r

    def check_consumers(self, ttl_s: float) -> None:
        """Dead consumers must leave the group (a live worker sweeps every ttl): wait a few sweeps."""
        stream = self.q.stream_key(self.stack.env["VIDPOSE_DEFAULT_MODEL"])
        deadline = time.monotonic() + 3 * ttl_s + 5
        while True:
            names = {c["name"].decode() for c in through_outages(self.q.r.xinfo_consumers, stream, GROUP)}
            stale = names - set(self.stack.live_workers())
            if not stale or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.report.stale_consumers = len(stale)


def run_faults(chaos: Chaos, specs: list[Spec], kills: int, restarts: list[float], min_jobs: int,
               active: int) -> None:
    """Phase 2: jobs submitted so that `active` run while the faults go on; `min_jobs` at least."""
    n = 0

    def submit_next():
        nonlocal n
        k = n % len(specs)
        chaos.add(chaos.stack.submit(specs[k].clip, specs[k].options), k)
        n += 1

    def top_up():
        while chaos.active() < active:
            submit_next()

    chaos.inject(kills, restarts, top_up=top_up)
    while n < min_jobs:
        submit_next()


def load(chaos: Chaos, specs: list[Spec], submissions: int, clients: int) -> list[threading.Thread]:
    """Phase 3: `clients` threads share `submissions` POSTs, each honouring Retry-After (429, and 503
    while Redis restarts). Returns the started threads."""
    import httpx

    r = chaos.report
    left = iter(range(submissions))
    lock = threading.Lock()

    def client():
        with httpx.Client(base_url=chaos.stack.url, timeout=60) as http:
            while True:
                with lock:
                    i = next(left, None)
                if i is None:
                    return
                spec = specs[i % len(specs)]
                while True:
                    try:
                        with open(spec.clip, "rb") as f:
                            resp = http.post("/estimate", files={"video": (spec.clip.name, f, "video/mp4")},
                                             data={"options": json.dumps(spec.options)})
                    except httpx.TransportError:
                        with lock:
                            r.resets += 1
                        time.sleep(1)
                        continue
                    with lock:
                        r.submissions += 1
                    if resp.status_code in (429, 503) and "Retry-After" in resp.headers:
                        with lock:
                            if resp.status_code == 429:
                                r.answers_429 += 1
                            else:
                                r.answers_503 += 1
                        time.sleep(float(resp.headers["Retry-After"]))
                        continue
                    if resp.status_code >= 500:
                        with lock:
                            r.answers_5xx += 1
                        time.sleep(1)
                        continue
                    if resp.status_code == 202:
                        chaos.add(resp.json()["job_id"], i % len(specs))
                    break

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--redis-restarts", default="0,0.01,0.05,3", help="seconds down, one per restart")
    ap.add_argument("--jobs", type=int, default=20, help="jobs in the fault phase (at least)")
    ap.add_argument("--active", type=int, default=6, help="jobs kept running during the fault phase")
    ap.add_argument("--submissions", type=int, default=2000, help="load phase POSTs (0: none)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--load-kills", type=int, default=4, help="kills during the load phase")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-queued-frames", type=int, default=600,
                    help="the API's backpressure threshold (low: the load phase meets 429 + Retry-After)")
    ap.add_argument("--scale", type=int, default=1, help="clip length multiplier")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    restarts = [float(x) for x in args.redis_restarts.split(",") if x.strip()]

    from tests.e2e.conftest import ServiceStack

    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vidpose-chaos-"))
    model = make_model(work)
    specs = make_specs(work, args.scale)
    server = RedisServer(data_dir=str(work / "redis"), appendonly=True).start()
    stack = ServiceStack(server.url, model, work, VIDPOSE_MAX_QUEUED_FRAMES=args.max_queued_frames,
                         **CHAOS_ENV)
    stamp = lambda m: print(f"[{time.monotonic() - t0:7.1f}s] {m}", flush=True)  # noqa: E731
    try:
        stack.start_api()
        for _ in range(args.workers):
            stack.start_worker()
        stack.wait_ready()
        chaos = Chaos(stack, server, args.seed, log=stamp)
        refs = chaos.reference(specs)
        stamp("reference done")
        run_faults(chaos, specs, args.kills, restarts, args.jobs, args.active)
        if args.submissions:
            stamp(f"load: {args.submissions} submissions, {args.clients} clients")
            clients = load(chaos, specs, args.submissions, args.clients)
            chaos.inject(args.load_kills, restarts[:2])  # the main thread: see restart_redis
            for t in clients:
                t.join()
        chaos.wait_all(args.timeout)
        report = chaos.verify(specs, refs)
        chaos.check_consumers(CHAOS_ENV["VIDPOSE_WORKER_TTL_S"])
        report.seconds = round(time.monotonic() - t0, 1)
        print(json.dumps(report.__dict__, indent=1))
        return 0 if report.ok() else 1
    except REDIS_DOWN as e:
        print(f"redis error outside the retried calls: {e}")
        return 2
    finally:
        stack.close()
        server.stop()


def make_model(workdir: Path) -> Path:
    """Random weights of the e2e tests' tiny model (speed and plumbing, not accuracy)."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.config import get_preset
    from model.pose_model import PoseModel

    torch.manual_seed(0)
    cfg = get_preset("tiny-cpu", embed_dim=48, depth=1, num_heads=2, head_channels=16, diffusion_dim=8,
                     input_size=(128, 96), heatmap_size=(32, 24), local_window=(4, 3))
    path = workdir / "models" / "chaos-model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(PoseModel(cfg), path, info={"version": "chaos-1"})
    return path


if __name__ == "__main__":
    sys.exit(main())
