"""The NLU setting: text tasks sharing a pretrained transformer encoder (docs/nlu.md).

Importing this package is cheap; `datasets` and `transformers` are imported only by the
functions that need them, so the vision setting never pays for them.
"""
