"""vidpose service: HTTP API, Redis queue, pose workers, CLI."""

__version__ = "0.1.0"
