"""The FastAPI application of the vidpose API process (no torch: it only talks HTTP, Redis and files)."""

from __future__ import annotations

from fastapi import FastAPI

from service import __version__
from service.api.background import background_lifespan
from service.api.docs_page import install_docs
from service.api.errors import install_error_handlers
from service.api.info_routes import ops_router
from service.api.job_list import job_list_router
from service.api.middleware import HttpMetricsMiddleware
from service.api.overlay import overlay_router
from service.api.routes import jobs_router
from service.api.webpage import install_webpage
from service.blobs import BlobStore
from service.queue import JobQueue
from service.settings import Settings, get_settings

DESCRIPTION = """\
Video human-pose estimation as a service. Submit a clip with `POST /estimate` (multipart: `video` file,
optional `options` JSON), poll `GET /jobs/{id}`, then page through `GET /jobs/{id}/result` or watch
`GET /jobs/{id}/overlay.mp4` (the clip with the tracked skeletons). A web page for all of this is at `/`.
Every route of the jobs API is also served under `/v1`. When API keys are configured, send
`Authorization: Bearer <key>`. Errors are `{"error": {"code", "message"}}`.
"""


def create_app(settings: Settings | None = None, redis_client=None) -> FastAPI:
    """Build the app. `redis_client` (sync redis-py) defaults to one on settings.redis_url."""
    settings = settings or get_settings()
    if redis_client is None:
        if not settings.redis_url:
            raise ValueError("VIDPOSE_REDIS_URL is not set: the API needs a Redis server "
                             "(or run `vidpose serve`, which starts one)")
        import redis

        redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3,
                                            health_check_interval=30)
    app = FastAPI(title="vidpose", version=__version__, description=DESCRIPTION,
                  docs_url=None, redoc_url=None, lifespan=background_lifespan)
    app.state.settings = settings
    app.state.redis = redis_client
    app.state.queue = JobQueue(redis_client, settings)
    app.state.blobs = BlobStore(settings.blob_dir, settings.max_upload_bytes)
    install_error_handlers(app)
    app.include_router(jobs_router(settings))
    app.include_router(jobs_router(settings, "/v1"))
    app.include_router(job_list_router())
    app.include_router(job_list_router("/v1"))
    app.include_router(overlay_router())
    app.include_router(overlay_router("/v1"))
    app.include_router(ops_router())
    install_webpage(app)
    install_docs(app)
    app.add_middleware(HttpMetricsMiddleware)
    return app
