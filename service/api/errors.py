"""One error shape for every failure: `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import get_route_path

log = logging.getLogger("vidpose.api")


class ApiError(Exception):
    """Raised by handlers; rendered as {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def validation_message(errors) -> str:
    """Pydantic/FastAPI errors -> 'where: what; where: what'."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        msg = err.get("msg", "invalid")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def allowed_methods(app: FastAPI, scope) -> list[str]:
    """Every method the API documents for this request's path (the Allow header of a 405: GET and
    DELETE /jobs/{id} are two routes, and Starlette's own 405 names only the first). From the
    OpenAPI paths, so it never disagrees with the schema; [] for an undocumented path."""
    table = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        for template, ops in app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            table.append((re.compile(f"^{pattern}$"), {m.upper() for m in ops if m in _METHODS}))
        app.state.allow_table = table
    path = get_route_path(scope)
    return sorted({m for regex, methods in table if regex.match(path) for m in methods})


def install_error_handlers(app: FastAPI) -> None:
    import redis

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else _code_for(exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        if exc.status_code == 405:
            allow = allowed_methods(request.app, request.scope) or headers.get("Allow", "").split(", ")
            headers["Allow"] = ", ".join(allow)
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {headers['Allow']})"
        return error_response(exc.status_code, _code_for(exc.status_code), message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error_response(422, "invalid_request", validation_message(exc.errors()))

    @app.exception_handler(redis.RedisError)
    async def _redis_error(request: Request, exc: redis.RedisError):
        # The details (host, port, errno) go to the log only: clients may be unauthenticated.
        log.warning("redis error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "redis_unavailable", "the job store is unavailable; retry later",
                              {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")
