"""Stage `evaluate`: target dev/test metrics of every checkpoint, summary, plots."""
from alphavil.workflow import warm

warm.delegate()  # into a warm worker when one runs (make run, studies): no start-up

from alphavil import cli  # noqa: E402

if __name__ == "__main__":
    args = cli.parser(__doc__).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.evaluate(params))
