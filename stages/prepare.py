"""Stage `prepare`: compose MultiMNIST (or tokenise NLU tasks) into data/prepared."""
from alphavil import cli, pipeline

if __name__ == "__main__":
    args = cli.parser(__doc__).parse_args()
    cli.run(lambda: pipeline.prepare(args.params))
