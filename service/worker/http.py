"""The worker's own HTTP endpoints on worker_metrics_port: /metrics, /healthz, /readyz.

A plain threaded http.server: the worker has no web framework and needs none.
Prometheus scrapes each worker here (the API's /metrics covers only the API).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from service.metrics import WORKER_REGISTRY, render

log = logging.getLogger(__name__)


class WorkerHTTP:
    def __init__(self, host: str, port: int, ready: Callable[[], tuple[bool, dict]],
                 before_scrape: Callable[[], None] | None = None):
        self.ready = ready
        self.before_scrape = before_scrape or (lambda: None)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    outer.before_scrape()
                    body, ctype = render(WORKER_REGISTRY)
                    self._send(200, body, ctype)
                elif path == "/healthz":
                    self._json(200, {"status": "ok"})
                elif path == "/readyz":
                    ok, detail = outer.ready()
                    self._json(200 if ok else 503, {"status": "ready" if ok else "not ready", **detail})
                else:
                    self._json(404, {"error": {"code": "not_found", "message": f"no route {path}"}})

            def _json(self, status: int, obj: dict) -> None:
                self._send(status, json.dumps(obj).encode(), "application/json")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):  # keep scrapes out of the worker log
                log.debug("http %s", fmt % args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="worker-http", daemon=True)

    def start(self) -> WorkerHTTP:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
