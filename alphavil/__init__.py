"""alphavil: αVIL (α-Variable Importance Learning) target-task multitask learning as a
reproducible DVC pipeline. See docs/algorithm.md and docs/pipeline.md."""

__version__ = "0.1.0"
