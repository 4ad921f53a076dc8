"""`vidpose` subcommands of the worker side: worker, serve.

Import-light: handlers import torch (worker) or start child processes (serve)
only when they run.
"""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    w = sub.add_parser(
        "worker", help="run a pose worker (needs VIDPOSE_REDIS_URL)",
        description="Load checkpoint(s) once, warm up, then claim jobs from Redis and run them until "
        "SIGTERM/SIGINT (drain: finish held jobs for up to --drain-timeout seconds, requeue the rest). "
        "Settings come from VIDPOSE_* env vars; metrics on VIDPOSE_WORKER_METRICS_PORT.")
    w.add_argument("--model", action="append", default=None, metavar="NAME|PATH",
                   help="model to serve (repeatable): a name in VIDPOSE_MODELS_DIR or a .safetensors path "
                   "(served under its file stem). Default: VIDPOSE_MODELS (or VIDPOSE_DEFAULT_MODEL).")
    w.add_argument("--drain-timeout", type=float, default=30.0,
                   help="seconds held jobs may run after SIGTERM before they are requeued (default 30)")
    w.add_argument("--metrics-host", default=None,
                   help="address of the worker's /metrics /healthz /readyz (default: VIDPOSE_API_HOST)")
    w.add_argument("--id", default=None, help="worker id (default: host-pid-random)")
    w.set_defaults(func=run_worker)

    s = sub.add_parser(
        "serve", help="all-in-one: embedded Redis + API + one worker (a laptop setup)",
        description="Start Redis (an embedded redis-server unless VIDPOSE_REDIS_URL is set), the HTTP API "
        "and one worker as child processes; print the URL and a curl example. Ctrl-C or SIGTERM stops "
        "everything.")
    s.add_argument("--model", default=None, metavar="NAME|PATH",
                   help="checkpoint to serve: a name in VIDPOSE_MODELS_DIR or a .safetensors path "
                   "(default: VIDPOSE_DEFAULT_MODEL)")
    s.add_argument("--host", default=None, help="API bind address (default: VIDPOSE_API_HOST)")
    s.add_argument("--port", type=int, default=None,
                   help="API port (default: VIDPOSE_API_PORT; 0 = a free port)")
    s.add_argument("--drain-timeout", type=float, default=10.0,
                   help="seconds the worker may finish held jobs on shutdown (default 10)")
    s.add_argument("--ready-timeout", type=float, default=300.0,
                   help="seconds to wait for the API and worker to become ready (default 300)")
    s.set_defaults(func=run_serve)


def _logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_worker(args: argparse.Namespace) -> int:
    from service.settings import get_settings
    from service.worker.modelfiles import ModelNotFound

    settings = get_settings()
    _logging(settings.log_level)
    if not settings.redis_url:
        print("error: VIDPOSE_REDIS_URL is not set; `vidpose worker` needs a Redis server "
              "(`vidpose serve` starts one for you)", file=sys.stderr)
        return 2
    from service.worker.worker import MetricsPortInUse, Worker

    worker = Worker(settings, args.model or None, worker_id=args.id, drain_timeout_s=args.drain_timeout,
                    metrics_host=args.metrics_host)
    worker.install_signal_handlers()
    try:
        worker.bind_http()  # before the model loads: a taken port fails in a second, not after a load
        worker.load()
    except (ModelNotFound, MetricsPortInUse) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if worker.stopping.is_set():  # signalled while loading
        return 0
    return worker.run()


def run_serve(args: argparse.Namespace) -> int:
    from service.stack import serve

    return serve(args)
