"""`python eval.py ckpt_path=PATH [overrides]` in a checkout: the same as `divlab eval ...` (divlab/cli/eval.py)."""
if __name__ == "__main__":
    from divlab.cli.lean_process import command_process

    with command_process():
        from divlab.cli.eval import main
    main()
else:
    from divlab.cli.eval import evaluate, main  # noqa: F401 (tests import evaluate from here)
