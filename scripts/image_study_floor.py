"""What the image study's metrics give real data: the floor a perfect model would reach, and what pooling costs.

    python scripts/image_study_floor.py --out docs/results/records/image_study_floor.json

For each resolution (16: the study's; 28: Fashion-MNIST's own), in that resolution's shipped feature space, the
study's metrics of 1,000 training images (a disjoint draw per seed) against the first 1,000 test images, exactly as
the image callback scores a model's 1,000 samples: FD, KID, precision/recall, density/coverage and class KL.
"""
import argparse
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divlab.callbacks.evaluation_rng import seeded_stream  # noqa: E402
from divlab.callbacks.image_metrics import ImageFeatureMetrics, class_histogram, extract_features  # noqa: E402
from divlab.callbacks.periodic import Timer  # noqa: E402
from divlab.datamodules.images import ImageDataModule  # noqa: E402
from divlab.evaluation.feature_nets import FEATURE_SPACES, feature_space_name, load_feature_net  # noqa: E402
from divlab.evaluation.toy import mode_histogram_kl  # noqa: E402
from divlab.run_files import write_json_atomic  # noqa: E402
from divlab.tracking.result_records import machine_description  # noqa: E402
from divlab.tracking.run_record import git_commit  # noqa: E402


def floor(resolution: int | None, seed: int, n: int = 1000) -> dict:
    data = ImageDataModule("fashion_mnist", resolution=resolution)
    data.setup()
    space = feature_space_name("fashion_mnist", resolution)
    net, _ = load_feature_net(space)
    with seeded_stream(seed, torch.device("cpu")):
        index = torch.randperm(len(data.splits["train"][0]))[:n]
    train = data.real_images("train", len(data.splits["train"][0]))[index]
    real, fake = (extract_features(net, images, "cpu") for images in (data.real_images("test", n), train))
    suffix = FEATURE_SPACES[space]
    metrics = ImageFeatureMetrics(n_samples=n, seed=seed).score(real, fake, suffix, Timer())
    metrics[f"class_kl_{suffix}"] = mode_histogram_kl(class_histogram(net, fake)).item()
    return {"resolution": resolution or 28, "seed": seed, "metrics": metrics}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    rows = [floor(resolution, seed) for resolution in (16, None) for seed in args.seeds]
    record = {"command": "python scripts/image_study_floor.py " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
              "machine": machine_description(), "commit": git_commit(), "rows": rows}
    write_json_atomic(args.out, record)
    return record


if __name__ == "__main__":
    main()
