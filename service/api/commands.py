"""`vidpose` subcommands of the API side: api, estimate."""

from __future__ import annotations


def register(sub) -> None:
    """Add the API subcommands (none registered until they work)."""
