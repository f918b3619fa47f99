"""What tests/ and benchmarks/ both build on: the tiny params (params.py), a throwaway
git + DVC repository holding this tree's pipeline (dvcrepo.py), stage outputs to start
from or damage (artifacts.py) and small NLU inputs written on the spot (nlu.py).

Importable as `testkit` from the repository root: `python -m pytest` (pyproject.toml's
pytest `pythonpath`) and `python -m benchmarks.<name>` both put the root on sys.path."""
