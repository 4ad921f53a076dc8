"""`vidpose` subcommands that run the service: serve, api, worker, estimate."""

from __future__ import annotations


def register(sub) -> None:
    """Add the service subcommands (none registered until they work)."""
