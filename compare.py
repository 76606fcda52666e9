"""`python compare.py RUN_DIR ... --out OUT_DIR` in a checkout: the same as `divlab compare ...`
(divlab/cli/compare.py)."""
import sys

from divlab.cli.compare import compare, main, run_label  # noqa: F401 (tests import them from here)

if __name__ == "__main__":
    sys.exit(main())
