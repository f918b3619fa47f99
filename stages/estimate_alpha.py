"""Stage `estimate_alpha@<seed>-<epoch>`: fit α on the target's dev loss."""
from alphavil import cli, pipeline

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True, epoch=True).parse_args()
    cli.run(lambda: pipeline.estimate_alpha(args.seed, args.epoch, cli.overrides(args),
                                            args.params))
