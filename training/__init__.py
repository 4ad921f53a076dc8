"""vidpose training: datasets, transforms, trainer, evaluation and export."""
