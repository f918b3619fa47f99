"""The models: the multitask wrapper with per-task heads, the CNN, the transformer encoder and
its prefix cache."""
