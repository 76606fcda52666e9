"""Small domain classifiers whose penultimate layer is the feature space of divlab's FID/KID/PR/DC.

Inception-v3 weights cannot be downloaded on our machines, so each shipped image dataset gets a
small CNN trained by `scripts/train_feature_net.py` (weights and test accuracy under
`divlab/evaluation/weights/`). Inputs are images in [−1, 1] in divlab's batch layout; `forward`
returns the features, `classify` the logits. Metrics computed in these spaces carry the
dataset's short name (`val/fid_fmnist`), never "Inception".
"""
import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn

WEIGHTS_DIR = Path(__file__).parent / "weights"
# Feature space (a data set, `_<side>` when average-pooled to side × side) → the suffix metric names carry.
FEATURE_SPACES = {"fashion_mnist": "fmnist", "fashion_mnist_16": "fmnist16", "digits": "digits"}


def conv_block(c_in: int, c_out: int, pool: int | None = 2) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(pool)) if pool else nn.Sequential(*layers)


class FeatureClassifier(nn.Module):
    """conv blocks → flatten → Linear → ReLU (the `num_features`-dim features) → Linear (logits)."""

    def __init__(self, in_shape: tuple[int, int, int], channels: tuple[int, ...], num_features: int = 128,
                 num_classes: int = 10, dropout: float = 0.3):
        super().__init__()
        c, h, w = in_shape
        blocks = []
        for width in channels:
            blocks.append(conv_block(c, width))
            c, h, w = width, h // 2, w // 2
        self.in_shape = tuple(in_shape)
        self.channels = tuple(channels)
        self.num_features = num_features
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(c * h * w, num_features), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.body(x))

    def classify(self, x: Tensor) -> Tensor:
        return self.classify_features(self.forward(x))

    def classify_features(self, features: Tensor) -> Tensor:
        """Logits from features `forward` returned (no second pass through the network)."""
        return self.head(features)


# Architecture per dataset; the trained weights under weights/<name>.pt belong to these.
ARCHITECTURES = {
    "fashion_mnist": dict(in_shape=(1, 28, 28), channels=(32, 64, 64), num_features=128),
    "fashion_mnist_16": dict(in_shape=(1, 16, 16), channels=(32, 64, 64), num_features=128),
    "digits": dict(in_shape=(1, 8, 8), channels=(32, 64), num_features=64),
}


def feature_space_name(dataset: str, resolution: int | None = None) -> str:
    """The feature space of a data set's images: its own name, `<name>_<side>` when pooled to side × side."""
    return f"{dataset}_{resolution}" if resolution else dataset


def build_feature_net(dataset: str) -> FeatureClassifier:
    if dataset not in ARCHITECTURES:
        raise ValueError(f"no feature network for dataset {dataset!r}; shipped: {', '.join(sorted(ARCHITECTURES))}")
    return FeatureClassifier(**ARCHITECTURES[dataset])


def weights_path(dataset: str) -> Path:
    return WEIGHTS_DIR / f"{dataset}.pt"


def file_hash(path: Path, length: int = 12) -> str:
    """First `length` hex digits of the SHA-256 of a file's bytes (keys feature caches)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


def load_feature_net(dataset: str, path: str | Path | None = None) -> tuple[FeatureClassifier, str]:
    """The trained feature network for `dataset` in eval mode, and the hash of its weights file.

    Weights are a plain state dict (float16 to keep the file small), loaded with
    `weights_only=True`.
    """
    path = Path(path) if path is not None else weights_path(dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"feature-network weights {str(path)!r} not found; train them with "
            f"`python scripts/train_feature_net.py --dataset {dataset}`"
        )
    net = build_feature_net(dataset)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({name: value.float() if value.is_floating_point() else value for name, value in state.items()})
    return net.eval().requires_grad_(False), file_hash(path)


def feature_net_card(dataset: str) -> dict:
    """What `scripts/train_feature_net.py` recorded: test accuracy, epochs, command."""
    return json.loads((WEIGHTS_DIR / f"{dataset}.json").read_text())
