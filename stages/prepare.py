"""Stage `prepare`: compose MultiMNIST (or tokenise NLU tasks) into data/prepared."""
from alphavil import cli

if __name__ == "__main__":
    args = cli.parser(__doc__).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.prepare(params))
