"""`vidpose serve`: Redis (embedded unless VIDPOSE_REDIS_URL is set), the API and one worker, as
child processes of this one, on a laptop. Torch-free: the children load what they need.

Children die with this process (PR_SET_PDEATHSIG on Linux), and a signal here
stops them in order: worker (drains held jobs), API, then the embedded Redis.
A terminal's Ctrl-C reaches only this process: the API and worker run in their
own sessions and the embedded redis-server starts with SIGINT blocked, so Redis
is still there while the worker drains.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from service.stop_flag import StopFlag


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM if the serve process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Stack:
    """The child processes of `vidpose serve` (also used by bench/service_bench.py)."""

    def __init__(self, model: str | None = None, host: str | None = None, port: int | None = None,
                 drain_timeout: float = 10.0, extra_env: dict | None = None, quiet: bool = False):
        from service.embedded_redis import free_port
        from service.settings import get_settings
        from service.worker.modelfiles import resolve_model

        settings = get_settings()
        self.settings = settings
        self.name, self.path = resolve_model(model or settings.default_model, settings.models_dir)
        self.host = host or settings.api_host
        self.port = settings.api_port if port is None else port
        if self.port == 0:
            self.port = free_port(self.host)
        self.metrics_port = settings.worker_metrics_port
        if self.metrics_port and not _port_free(self.host, self.metrics_port):
            self.metrics_port = free_port(self.host)
        self.drain_timeout = drain_timeout
        self.extra_env = extra_env or {}
        self.quiet = quiet
        self.redis = None
        self.redis_url = settings.redis_url
        self.api: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    @property
    def display_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def url(self) -> str:
        return f"http://{self.display_host}:{self.port}"

    def env(self) -> dict:
        env = os.environ.copy()
        env.update({
            "VIDPOSE_REDIS_URL": self.redis_url,
            "VIDPOSE_MODELS_DIR": str(self.path.parent),
            "VIDPOSE_DEFAULT_MODEL": self.name,
            "VIDPOSE_MODELS": self.name,
            "VIDPOSE_BLOB_DIR": str(Path(self.settings.blob_dir).resolve()),
            "VIDPOSE_API_HOST": self.host,
            "VIDPOSE_API_PORT": str(self.port),
            "VIDPOSE_WORKER_METRICS_PORT": str(self.metrics_port),
        })
        env.update(self.extra_env)
        return env

    def _spawn(self, *args: str) -> subprocess.Popen:
        out = subprocess.DEVNULL if self.quiet else None
        return subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=self.env(),
                                preexec_fn=_die_with_parent, stdout=out, stderr=out, start_new_session=True)

    @property
    def redis_dir(self) -> Path:
        """Where the embedded Redis keeps its AOF: next to the uploads (default var/redis), so jobs
        survive a restart of `vidpose serve` on the same folder."""
        return Path(self.settings.blob_dir).resolve().parent / "redis"

    def start(self) -> Stack:
        if not _port_free(self.host, self.port):
            raise RuntimeError(f"port {self.port} on {self.host} is in use: pick another with --port "
                               "(or VIDPOSE_API_PORT)")
        if not self.redis_url:
            from service.embedded_redis import RedisServer

            # The signal mask is inherited across exec: redis-server ignores the terminal's Ctrl-C
            # (still pending, never delivered) and stops only when stop() sends SIGTERM.
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                self.redis = RedisServer(data_dir=str(self.redis_dir), appendonly=True).start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
            self.redis_url = self.redis.url
        Path(self.settings.blob_dir).resolve().mkdir(parents=True, exist_ok=True)
        self.api = self._spawn("api")
        self.worker = self._spawn("worker", "--drain-timeout", str(self.drain_timeout))
        return self

    def children(self) -> list[subprocess.Popen]:
        return [p for p in (self.worker, self.api) if p is not None]

    def dead_child(self) -> str | None:
        for name, p in (("worker", self.worker), ("API", self.api)):
            if p is not None and p.poll() is not None:
                return f"the {name} exited with status {p.returncode}"
        return None

    def _quietly_ready(self, queue) -> bool:
        """What /readyz checks (a live worker in Redis), plus the API's port open, asked without an HTTP
        request: every request is an access-log line, and a dozen `GET /readyz 503` should not open the
        serve log. Only when this holds does wait_ready ask /readyz itself."""
        try:
            if not queue.live_workers():
                return False
        except Exception:  # Redis not up yet
            return False
        try:
            with socket.create_connection((self.display_host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def wait_ready(self, timeout: float, stop: StopFlag | None = None) -> None:
        import redis

        from service.queue import JobQueue

        client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        prefix = self.env().get("VIDPOSE_KEY_PREFIX", self.settings.key_prefix)  # extra_env may set it
        queue = JobQueue(client, self.settings.model_copy(update={"key_prefix": prefix}))
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                dead = self.dead_child()
                if dead:
                    raise RuntimeError(dead)
                if self._quietly_ready(queue) and _get(self.url + "/readyz") == 200:
                    return
                time.sleep(0.5)
        finally:
            client.close()
        raise RuntimeError(f"not ready after {timeout:.0f}s ({self.url}/readyz)")

    def stop(self) -> None:
        """Worker first (it drains and requeues), then the API, then the embedded Redis."""
        for p, grace in ((self.worker, self.drain_timeout + 15), (self.api, 15)):
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def banner(stack: Stack) -> str:
    auth = ' -H "Authorization: Bearer $VIDPOSE_API_KEY"' if stack.settings.api_keys else ""
    metrics = (f"  worker metrics: http://{stack.display_host}:{stack.metrics_port}/metrics\n"
               if stack.metrics_port else "")
    embedded = f" (embedded, data kept in {stack.redis.data_dir})" if stack.redis else ""
    return (
        f"vidpose is serving model {stack.name!r} ({stack.path})\n"
        f"  web page:       {stack.url}/   (upload a clip, watch progress, play the skeleton overlay)\n"
        f"  API:            {stack.url}   (OpenAPI docs: {stack.url}/docs)\n"
        f"  API metrics:    {stack.url}/metrics\n{metrics}"
        f"  redis:          {stack.redis_url}{embedded}\n"
        f"Try it:\n"
        f"  curl -s{auth} -F video=@clip.mp4 {stack.url}/estimate\n"
        f"  curl -s{auth} {stack.url}/jobs/JOB_ID\n"
        f"  curl -s{auth} {stack.url}/jobs/JOB_ID/result > poses.json\n"
        f"  curl -s{auth} {stack.url}/jobs/JOB_ID/overlay.mp4 > overlay.mp4\n"
        f"Press Ctrl-C to stop."
    )


def serve(args: argparse.Namespace) -> int:
    from service.worker.modelfiles import ModelNotFound

    stop = StopFlag()  # not a threading.Event: see service/stop_flag.py

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack = Stack(args.model, args.host, args.port, args.drain_timeout)
    except ModelNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rc = 0
    try:
        stack.start()
        print(f"vidpose: starting (model {stack.name}, redis {stack.redis_url}) ...", file=sys.stderr,
              flush=True)
        stack.wait_ready(args.ready_timeout, stop)
        print(banner(stack), flush=True)
        while not stop.wait(0.5):
            dead = stack.dead_child()
            if dead:
                print(f"vidpose: {dead}; stopping", file=sys.stderr, flush=True)
                rc = 1
                break
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        rc = 1
    finally:
        print("vidpose: stopping ...", file=sys.stderr, flush=True)
        stack.stop()
    return rc
