"""Data: where tasks' examples come from (catalogues of sources and task kinds, torch-free) and
the prepared splits on disk."""
