"""Training: the loop, its data, checkpoints, optimizers, callbacks, and a run's life in the registry."""
