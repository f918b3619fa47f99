"""Stage `train_method@<method>-<seed>`: a baseline method, all epochs, from θ_0."""
from alphavil import cli

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True, method=True).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.train_method(
        args.method, args.seed, params))
