"""Artifacts on disk: where each lives (layout) and how it is written atomically and read back
checked."""
