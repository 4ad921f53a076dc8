"""vidpose service: worker."""
