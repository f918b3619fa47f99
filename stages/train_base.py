"""Stage `train_base@<seed>`: θ_0, shared by every method of that seed."""
from alphavil import cli, pipeline

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True).parse_args()
    cli.run(lambda: pipeline.train_base(args.seed, args.params))
