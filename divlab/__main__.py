"""`python -m divlab train|eval|compare ARGS`, the same as the `divlab` command."""
import sys

from divlab.cli import main

sys.exit(main())
