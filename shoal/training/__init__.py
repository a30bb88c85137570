"""Training: the loop, its data, checkpoints, evaluation, optimizers, the strategy (one process or a rank of a
distributed job), callbacks, and a run's life in the registry."""
