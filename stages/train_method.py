"""Stage `train_method@<method>-<seed>`: a baseline method, all epochs, from θ_0."""
from alphavil.workflow import warm

warm.delegate()  # into a warm worker when one runs (make run, studies): no start-up

from alphavil import cli  # noqa: E402

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True, method=True).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.train_method(
        args.method, args.seed, params))
