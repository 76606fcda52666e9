"""The image study page's sample grids: one tile per member, its seed-0 run's samples, from the study's folder.

    python scripts/image_study_samples.py outputs/multiruns/study_fashion_mnist

Reads the member list from docs/results/records/image_study.json and writes
docs/results/figures/images_samples.png.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divlab.tracking.image_study import plot_sample_grids  # noqa: E402
from divlab.tracking.results_tables import FIGURES, record_set  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--record-set", default="image_study")
    parser.add_argument("--out", type=Path, default=FIGURES / "images_samples.png")
    args = parser.parse_args(argv)
    tiles = plot_sample_grids(record_set(args.record_set), args.sweep_dir, args.out)
    print(f"{args.out}: {tiles} members")
    return 0


if __name__ == "__main__":
    sys.exit(main())
