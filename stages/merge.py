"""Stage `merge@<seed>-<epoch>`: θ + Σ α_k δ_k and the new task weights."""
from alphavil.workflow import warm

warm.delegate()  # into a warm worker when one runs (make run, studies): no start-up

from alphavil import cli  # noqa: E402

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True, epoch=True).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.merge(
        args.seed, args.epoch, cli.overrides(args), params))
