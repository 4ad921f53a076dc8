"""End-to-end fixtures: the real service as processes.

A uvicorn API (`python -m service.cli api`), worker processes (`python -m service.cli
worker`), the session's real redis-server, a blob dir and a small random-weight
checkpoint. Each stack uses its own Redis key prefix.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    from service.embedded_redis import free_port as fp

    return fp()




@pytest.fixture(scope="session")
def e2e_model(tmp_path_factory) -> Path:
    """models_dir/test-model.safetensors: tiny random weights (plumbing, not accuracy)."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.config import get_preset
    from model.pose_model import PoseModel

    torch.manual_seed(0)
    cfg = get_preset("tiny-cpu", embed_dim=48, depth=1, num_heads=2, head_channels=16, diffusion_dim=8,
                     input_size=(128, 96), heatmap_size=(32, 24), local_window=(4, 3),
                     temporal=importlib.util.find_spec("model.temporal") is not None)
    path = tmp_path_factory.mktemp("models") / "test-model.safetensors"
    save_checkpoint(PoseModel(cfg), path, info={"version": "e2e-1"})
    return path


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory, shared_data, make_clip) -> Path:
    """900 frames of 160x96 (from soccer.mp4): with two boxes per frame a job of 1800 windows."""
    src = shared_data / "videos" / "soccer.mp4"
    return make_clip(tmp_path_factory.mktemp("clips") / "long.mp4", src, 900)


class ServiceStack:
    """API + workers as child processes; call close() (the fixture does)."""

    def __init__(self, redis_url: str, model: Path, workdir: Path, **env):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = f"e2e{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "VIDPOSE_REDIS_URL": redis_url, "VIDPOSE_KEY_PREFIX": self.prefix,
            "VIDPOSE_BLOB_DIR": str(workdir / "blobs"), "VIDPOSE_MODELS_DIR": str(model.parent),
            "VIDPOSE_DEFAULT_MODEL": model.stem, "VIDPOSE_MODELS": model.stem,
            "VIDPOSE_API_HOST": "127.0.0.1", "VIDPOSE_API_PORT": str(self.port),
            "VIDPOSE_WORKER_THREADS": "1", "VIDPOSE_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.update({k: str(v) for k, v in env.items()})
        self.api: subprocess.Popen | None = None
        self.workers: dict[str, tuple[subprocess.Popen, int]] = {}  # id -> (process, metrics port)
        self._n = 0
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def _spawn(self, args: list[str], log_name: str, env: dict) -> subprocess.Popen:
        log = open(self.workdir / log_name, "ab")
        try:
            return subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env, cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def start_api(self) -> None:
        self.api = self._spawn(["api"], "api.log", self.env)

    def start_worker(self, drain_timeout: float = 1.0, models: tuple[str, ...] = ()) -> str:
        self._n += 1
        wid = f"{self.prefix}-w{self._n}"
        port = free_port()
        env = {**self.env, "VIDPOSE_WORKER_METRICS_PORT": str(port)}
        args = ["worker", "--id", wid, "--drain-timeout", str(drain_timeout)]
        for m in models:
            args += ["--model", m]
        proc = self._spawn(args, f"{wid}.log", env)
        self.workers[wid] = (proc, port)
        return wid

    def log(self, name: str) -> str:
        p = self.workdir / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def worker_ready(self, wid: str) -> bool:
        proc, port = self.workers[wid]
        if proc.poll() is not None:
            raise RuntimeError(f"worker {wid} exited {proc.returncode}:\n{self.log(wid)[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"API exited {self.api.returncode}:\n{self.log('api')[-3000:]}")
            live = [w for w, (p, _) in self.workers.items() if p.poll() is None]
            if all(self.worker_ready(w) for w in live):
                try:
                    if self.client.get("/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"stack not ready in {timeout}s:\n{self.log('api')[-2000:]}")

    def live_workers(self) -> list[str]:
        return [w for w, (p, _) in self.workers.items() if p.poll() is None]

    def ensure_workers(self, n: int) -> None:
        while len(self.live_workers()) < n:
            self.start_worker()
        self.wait_ready()

    def worker_metrics(self, wid: str) -> str:
        return httpx.get(f"http://127.0.0.1:{self.workers[wid][1]}/metrics", timeout=10).text

    def queue(self):
        """A JobQueue on the stack's Redis and prefix (to look behind the API in assertions)."""
        import redis

        from service.queue import JobQueue
        from service.settings import Settings

        s = Settings(redis_url=self.env["VIDPOSE_REDIS_URL"], key_prefix=self.prefix)
        return JobQueue(redis.Redis.from_url(s.redis_url), s)

    # -- client helpers -----------------------------------------------------------------------
    def submit(self, path: Path, options: dict | None = None) -> str:
        """POST /estimate; returns the job id (asserts 202)."""
        import json

        data = {"options": json.dumps(options)} if options else None
        with open(path, "rb") as f:
            r = self.client.post("/estimate", files={"video": (path.name, f, "video/mp4")}, data=data)
        assert r.status_code == 202, r.text
        return r.json()["job_id"]

    def job(self, job_id: str) -> dict:
        r = self.client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            j = self.job(job_id)
            if j["status"] in statuses:
                return j
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not in {statuses} after {timeout}s: {self.job(job_id)}")

    def result(self, job_id: str) -> dict:
        """Every result page, frames concatenated."""
        frames, start, first = [], 0, None
        while start is not None:
            r = self.client.get(f"/jobs/{job_id}/result", params={"start_frame": start})
            assert r.status_code == 200, r.text
            page = r.json()
            first = first or page
            frames += page["frames"]
            start = page["next_start_frame"]
        return {**first, "frames": frames}

    def close(self) -> None:
        procs = [p for p, _ in self.workers.values()] + ([self.api] if self.api else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.client.close()


@pytest.fixture(scope="module")
def make_stack(redis_server, e2e_model, tmp_path_factory):
    stacks = []

    def make(workers: int = 2, **env) -> ServiceStack:
        st = ServiceStack(redis_server.url, e2e_model, tmp_path_factory.mktemp("stack"), **env)
        stacks.append(st)
        st.start_api()
        for _ in range(workers):
            st.start_worker()
        st.wait_ready()
        return st

    yield make
    for st in stacks:
        st.close()
