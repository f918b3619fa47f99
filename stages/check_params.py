"""Stage `check_params`: params.yaml is valid and nothing DVC renders from it can act as shell
syntax or a path outside the repository (alphavil/safety.py). Every other stage depends on it,
so it runs before DVC runs their commands or removes their outputs. It always checks the root
params.yaml (the file DVC renders), so it takes no --params."""
import argparse

from alphavil.workflow import warm

warm.delegate()  # into a warm worker when one runs (make run, studies): no start-up

from alphavil import cli  # noqa: E402
from alphavil.store import layout
from alphavil.workflow import safety

if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__).parse_args()
    cli.run("params.yaml", lambda _, params: safety.check_stage(layout.CHECKED, params),
            pipeline=False)
