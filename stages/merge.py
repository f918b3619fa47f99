"""Stage `merge@<seed>-<epoch>`: θ + Σ α_k δ_k and the new task weights."""
from alphavil import cli

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True, epoch=True).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.merge(
        args.seed, args.epoch, cli.overrides(args), params))
