"""Fixtures for API tests: a live uvicorn server on a free port (real HTTP, real Redis) and
`SimulatedWorker`, the test double of the worker process.

SimulatedWorker drives a job through JobQueue's worker-side methods exactly as the
real worker must (claim, start, write_frames, finish, heartbeat), but makes its
"poses" from the boxes (keypoints spread over the box). It exists to test the API
and the queue contract; the real worker's end-to-end tests live with the worker.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn

from service import contract
from service.api.app import create_app
from service.embedded_redis import free_port
from service.queue import JobQueue
from service.settings import Settings

MODEL = "test-model"


@dataclass
class LiveApi:
    url: str
    settings: Settings
    queue: JobQueue  # test-side handle on the same Redis data

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    @property
    def blob_dir(self) -> Path:
        return Path(self.settings.blob_dir)

    def blobs(self) -> list[Path]:
        """Every file in the blob dir, temp files included (rejections must leave none)."""
        return sorted(p for p in self.blob_dir.iterdir() if p.is_file())


@pytest.fixture()
def api_factory(redis_server, tmp_path):
    """start(**settings) -> LiveApi: uvicorn in a background thread with its own key prefix."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []
    clients = []

    def start(**overrides) -> LiveApi:
        values = dict(redis_url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:8]}",
                      blob_dir=tmp_path / f"blobs{len(servers)}", models_dir=tmp_path / "models",
                      default_model=MODEL, models=[MODEL], api_keys=[], worker_ttl_s=5)
        values.update(overrides)
        settings = Settings(**values)
        app = create_app(settings)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        servers.append((server, thread))
        client = redis.Redis.from_url(redis_server.url)
        clients.append(client)
        return LiveApi(f"http://127.0.0.1:{port}", settings, JobQueue(client, settings))

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
    for client in clients:
        client.close()


@pytest.fixture()
def api(api_factory) -> LiveApi:
    return api_factory()


def simulated_frame(index: int, fps: float, boxes: list[dict]) -> dict:
    instances = []
    for i, box in enumerate(boxes):
        x, y, w, h = box["bbox"]
        kps = [[x + w * (k % 4 + 0.5) / 4, y + h * (k // 4 + 0.5) / 5, 0.5 + 0.02 * k] for k in range(17)]
        instances.append(contract.instance(box.get("track_id", i), [x, y, w, h], kps, box.get("score")))
    return contract.result_frame(index, index / fps if fps else 0.0, instances)


class SimulatedWorker:
    """Test double of the worker process (see module docstring). Run as a thread."""

    def __init__(self, live: LiveApi, worker_id: str = "sim-worker", frame_delay_s: float = 0.0,
                 fail_with: tuple[str, str] | None = None):
        self.queue = live.queue
        self.settings = live.settings
        self.worker_id = worker_id
        self.frame_delay_s = frame_delay_s
        self.fail_with = fail_with
        self.models = list(self.settings.models)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.jobs_done: list[str] = []

    def __enter__(self) -> SimulatedWorker:
        self.queue.ensure_groups(self.models)
        self.queue.register_model(MODEL, {"name": MODEL, "version": "sim-1", "device": "cpu",
                                          "config": {"window": 5}})
        self.queue.heartbeat(self.worker_id, {"model": MODEL, "device": "cpu", "pid": 0})
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.queue.deregister(self.worker_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.queue.heartbeat(self.worker_id, {"model": MODEL, "device": "cpu", "pid": 0})
            for model, entry, job_id in self.queue.claim(self.worker_id, self.models, 1, block_ms=50):
                self._process(model, entry, job_id)

    def _process(self, model: str, entry: str, job_id: str) -> None:
        job = self.queue.get_job(job_id)
        video = job["video"]
        n = job["frames_total"]
        if not self.queue.start(job_id, self.worker_id, n, video):
            self.queue.finish(job_id, model, entry, "cancelled")  # only acks: job is already terminal
            return
        if self.fail_with:
            self.queue.finish(job_id, model, entry, "failed", *self.fail_with)
            return
        given = job["options"].get("boxes")
        full = [{"bbox": [0.0, 0.0, float(video["width"]), float(video["height"])]}]
        for i in range(n):
            if self.queue.is_cancelled(job_id) or self._stop.is_set():
                self.queue.finish(job_id, model, entry, "cancelled")
                return
            boxes = given.get(str(i), []) if given is not None else full
            self.queue.write_frames(job_id, {i: simulated_frame(i, video["fps"], boxes)})
            time.sleep(self.frame_delay_s)
        self.queue.finish(job_id, model, entry, "succeeded")
        self.jobs_done.append(job_id)


@pytest.fixture()
def simulated_worker():
    """simulated_worker(live, **kw) -> a started SimulatedWorker, stopped at teardown."""
    started: list[SimulatedWorker] = []

    def make(live: LiveApi, **kw) -> SimulatedWorker:
        w = SimulatedWorker(live, **kw).__enter__()
        started.append(w)
        return w

    yield make
    for w in started:
        w.__exit__(None, None, None)


@pytest.fixture()
def clips(shared_data) -> dict[str, Path]:
    videos = shared_data / "videos"
    return {"soccer": videos / "soccer.mp4", "street": videos / "street_walk.mp4"}
