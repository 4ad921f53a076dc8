"""Bearer API keys. A job belongs to the key that created it, stored as HMAC-SHA256(owner secret, key).

The owner secret is the `owner_secret` setting, or else a random one the first API replica writes to
Redis (`<key_prefix>:owner_secret`, SET NX, no expiry) and every replica on that Redis reads back, so
they agree on owners. The secret makes stored owner ids useless for guessing keys offline.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request

from service.api.errors import ApiError


def owner_of(api_key: str, secret: bytes) -> str:
    """What a job stores as its owner: never the key itself, nor a plain hash of it."""
    return hmac.new(secret, api_key.encode(), hashlib.sha256).hexdigest()


def shared_secret(redis_client, key_prefix: str) -> bytes:
    """The owner secret kept in Redis: created by the first caller (SET NX), read by all."""
    key = f"{key_prefix}:owner_secret"
    redis_client.set(key, secrets.token_hex(32), nx=True)
    value = redis_client.get(key)
    return value if isinstance(value, bytes) else value.encode()


def owner_secret(app) -> bytes:
    """The app's owner secret (the setting, else Redis's; cached once read)."""
    cached = getattr(app.state, "owner_secret", None)
    if cached is None:
        configured = app.state.settings.owner_secret
        if configured is not None:
            cached = configured.get_secret_value().encode()
        else:
            cached = shared_secret(app.state.redis, app.state.settings.key_prefix)
        app.state.owner_secret = cached
    return cached


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
    return owner_of(key, owner_secret(request.app))
