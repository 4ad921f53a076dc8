"""Bearer API keys. A job belongs to the key that created it (stored as the key's sha256)."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from service.api.errors import ApiError


def owner_of(api_key: str) -> str:
    """What a job stores as its owner: never the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def authenticate(request: Request) -> str:
    """FastAPI dependency: the caller's owner id ("" when auth is off); 401 otherwise."""
    settings = request.app.state.settings
    if not settings.api_keys:
        return ""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'",
                       {"WWW-Authenticate": "Bearer"})
    # Compare against every key in constant time (no early exit on the first match).
    ok = False
    for candidate in settings.api_keys:
        ok |= hmac.compare_digest(candidate.encode(), key.encode())
    if not ok:
        raise ApiError(401, "unauthorized", "invalid API key", {"WWW-Authenticate": "Bearer"})
    return owner_of(key)
