"""The training loop, optimizers, metrics, compute budgets and the per-run context a method
trains in."""
