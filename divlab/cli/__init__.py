"""The `divlab` command: `divlab train|eval|compare ARGS`, each the same as `python train.py|eval.py|compare.py
ARGS` in a checkout (Hydra overrides for train and eval, options for compare)."""
import sys

USAGE = """usage: divlab COMMAND [ARGS ...]

commands:
  train     train a model: divlab train experiment=vae_ring8 trainer.max_epochs=2 (Hydra overrides; -m sweeps)
  eval      test a checkpoint with the training callbacks: divlab eval ckpt_path=RUN/checkpoints/last.ckpt
  compare   compare finished runs: divlab compare RUN_OR_MULTIRUN_DIR ... --out OUT_DIR
  results   the docs' results tables from committed records: divlab results build|check|record

`divlab COMMAND --help` shows a command's options (train/eval: the config groups and Hydra's flags)."""
COMMANDS = ("train", "eval", "compare", "results")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"divlab: unknown command {command!r}; choose one of {', '.join(COMMANDS)}\n\n{USAGE}", file=sys.stderr)
        return 2
    if command == "compare":
        from divlab.cli.compare import main as compare_main

        return compare_main(args, prog="divlab compare")
    if command == "results":
        from divlab.cli.results import main as results_main

        return results_main(args)
    # Hydra reads the overrides from `args`; sys.argv stays whole, so a DDP launch re-runs `divlab train ...`.
    from divlab.cli.lean_process import command_process

    with command_process():
        if command == "train":
            from divlab.cli.train import main as command_main
        else:
            from divlab.cli.eval import main as command_main
    command_main(args)
    return 0
