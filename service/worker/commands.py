"""`vidpose` subcommands of the worker side: worker, serve."""

from __future__ import annotations


def register(sub) -> None:
    """Add the worker subcommands (none registered until they work)."""
