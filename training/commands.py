"""`vidpose` subcommands for models and data: import-vitpose, synth, train, eval, export."""

from __future__ import annotations


def register(sub) -> None:
    """Add the training subcommands (none registered until they work)."""
