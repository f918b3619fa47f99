"""Commands around the pipeline: studies, learning-rate grids, the epoch schedule, dvc.lock
handling, params safety, verification."""
