"""Shared fixtures: a real redis-server, the sample data folder, offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (see its README for provenance).
SHARED_DATA = Path(os.environ.get("VIDPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"sample data not found at {SHARED_DATA} (set VIDPOSE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port for the whole session."""
    from service.embedded_redis import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture()
def redis_client(redis_server):
    """A client on a clean database."""
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=False)
    client.flushdb()
    yield client
    client.close()
