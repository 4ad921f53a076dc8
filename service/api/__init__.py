"""vidpose service: api."""
