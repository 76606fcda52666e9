"""`python train.py [overrides]` in a checkout: the same as `divlab train [overrides]` (divlab/cli/train.py)."""
if __name__ == "__main__":
    from divlab.cli.lean_process import command_process

    with command_process():
        from divlab.cli.train import main
    main()
else:
    from divlab.cli.train import describe_run, main, run  # noqa: F401 (tests and benchmarks import them from here)
