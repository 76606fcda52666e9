"""`python eval.py ckpt_path=PATH [overrides]` in a checkout: the same as `divlab eval ...` (divlab/cli/eval.py)."""
from divlab.cli.eval import evaluate, main  # noqa: F401 (tests import evaluate from here)

if __name__ == "__main__":
    main()
