"""Stage `train_base@<seed>`: θ_0, shared by every method of that seed."""
from alphavil import cli

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.train_base(args.seed, params))
