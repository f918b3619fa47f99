"""Stage `finetune@<seed>-<epoch>-<task>`: one task's fine-tune from θ, writes its delta."""
from alphavil.workflow import warm

warm.delegate()  # into a warm worker when one runs (make run, studies): no start-up

from alphavil import cli  # noqa: E402

if __name__ == "__main__":
    args = cli.parser(__doc__, seed=True, epoch=True, task=True).parse_args()
    cli.run(args.params, lambda pipeline, params: pipeline.finetune(
        args.seed, args.epoch, args.task, cli.overrides(args), params))
