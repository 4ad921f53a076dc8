"""HTTP metrics as a plain ASGI middleware (keeps streaming request bodies untouched).

Labels use the matched route template (`/jobs/{job_id}`), never the raw path,
so job ids cannot blow up label cardinality; unmatched paths count as "<unmatched>".
"""

from __future__ import annotations

import time

from service import metrics


class HttpMetricsMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        start = time.perf_counter()

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            metrics.HTTP_REQUESTS.labels(template, method, str(status["code"])).inc()
            metrics.HTTP_DURATION.labels(template, method).observe(time.perf_counter() - start)
