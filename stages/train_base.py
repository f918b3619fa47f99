"""Stage `train_base@<seed>`: θ_0, shared by every method of that seed."""
from alphavil.workflow import warm

warm.delegate()  # into a warm worker when one runs (make run, studies): no start-up

from alphavil import cli  # noqa: E402

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.train_base(args.seed, params))
