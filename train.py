"""`python train.py [overrides]` in a checkout: the same as `divlab train [overrides]` (divlab/cli/train.py)."""
from divlab.cli.train import describe_run, main, run  # noqa: F401 (tests and benchmarks import them from here)

if __name__ == "__main__":
    main()
