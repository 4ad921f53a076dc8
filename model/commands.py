"""`vidpose` subcommands about model files: import-vitpose."""

from __future__ import annotations


def register(sub) -> None:
    """Add the model subcommands (none registered until they work)."""
