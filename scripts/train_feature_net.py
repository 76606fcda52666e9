"""Train the small classifier whose penultimate layer is divlab's FID/KID/PR/DC feature space.

    python scripts/train_feature_net.py --dataset fashion_mnist --epochs 6
    python scripts/train_feature_net.py --dataset digits --epochs 40
    python scripts/train_feature_net.py --dataset fashion_mnist --resolution 16 --epochs 6   (the image study's)

Data comes through divlab's ImageDataModule (images in [−1, 1], its train split for training,
the official test split for the accuracy; `--resolution` average-pools them as `data.resolution`
does). Writes `divlab/evaluation/weights/<space>.pt` (a float16 state dict, loadable with
`weights_only=True`) and `<space>.json` (test accuracy, epochs, command, weights hash), where the
space is the dataset's name, `<dataset>_<side>` with `--resolution`.
"""
import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divlab.datamodules.images import ImageDataModule, to_unit_range  # noqa: E402
from divlab.evaluation.feature_nets import (  # noqa: E402
    WEIGHTS_DIR,
    build_feature_net,
    feature_space_name,
    file_hash,
)

MIN_ACCURACY = {"fashion_mnist": 0.90, "fashion_mnist_16": 0.88, "digits": 0.95}


@torch.no_grad()
def accuracy(net, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    net.eval()
    correct = sum(
        (net.classify(to_unit_range(x)).argmax(1) == y).sum().item()
        for x, y in zip(images.split(batch_size), labels.split(batch_size))
    )
    return correct / len(labels)


def augment(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Random translation by up to `max_shift` pixels (zero padding is −1, the background)."""
    if max_shift == 0:
        return x
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,)).tolist()
    return padded[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("digits", "fashion_mnist"), default="fashion_mnist")
    parser.add_argument("--resolution", type=int, help="average-pool the images to this side (data.resolution)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-shift", type=int, default=0)
    parser.add_argument("--data-dir", default="~/.cache/divlab/data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=str(WEIGHTS_DIR))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    space = feature_space_name(args.dataset, args.resolution)
    data = ImageDataModule(args.dataset, data_dir=args.data_dir, batch_size=args.batch_size, val_size=1,
                           resolution=args.resolution)
    data.setup()
    net = build_feature_net(space)
    train_labels = data.labels("train")
    steps_per_epoch = math.ceil(len(train_labels) / args.batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * steps_per_epoch)
    index = torch.arange(len(train_labels))
    start = time.time()
    for epoch in range(args.epochs):
        net.train()
        order = index[torch.randperm(len(index))]
        for batch in order.split(args.batch_size):
            x = augment(to_unit_range(data.splits["train"][0][batch]), args.max_shift)
            loss = F.cross_entropy(net.classify(x), train_labels[batch], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        test_x, test_y = data.splits["test"]
        print(f"epoch {epoch + 1}: loss {loss.item():.3f} test acc {accuracy(net, test_x, test_y):.4f} "
              f"({time.time() - start:.0f}s)", flush=True)

    test_accuracy = accuracy(net, *data.splits["test"])
    if test_accuracy < MIN_ACCURACY[space]:
        raise SystemExit(f"test accuracy {test_accuracy:.4f} < required {MIN_ACCURACY[space]}; not saved")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{space}.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, weights)
    card = {
        "dataset": space,
        "test_accuracy": round(test_accuracy, 4),
        "test_size": len(data.splits["test"][1]),
        "epochs": args.epochs,
        "train_seconds": round(time.time() - start, 1),
        "num_features": net.num_features,
        "weights_sha256_12": file_hash(weights),
        "command": "python scripts/train_feature_net.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
    }
    (out / f"{space}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    return card


if __name__ == "__main__":
    main()
