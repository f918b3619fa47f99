"""Stage `evaluate`: target dev/test metrics of every checkpoint, summary, plots."""
from alphavil import cli

if __name__ == "__main__":
    args = cli.parser(__doc__).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.evaluate(params))
