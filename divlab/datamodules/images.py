"""Image datasets as in-memory uint8 tensors: Fashion-MNIST (shipped), MNIST, CIFAR-10, 8×8 digits."""
import functools
import gzip
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from divlab.atomic_files import atomic_write
from divlab.datamodules.tensor_data import BatchedTensorDataset, InMemoryDataModule
from divlab.validation import check_choice, check_positive

SHIPPED_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def to_unit_range(rows: torch.Tensor, binarize: bool = False) -> torch.Tensor:
    """uint8 pixels → float in [−1, 1]; with `binarize`, a fresh Bernoulli(x/255) draw in {−1, 1}."""
    x = rows.float() / 255.0
    if binarize:
        x = torch.bernoulli(x)
    return x * 2.0 - 1.0


def install_shipped_fashion_mnist(data_dir: Path) -> bool:
    """Decompress Debian's dataset-fashion-mnist idx files where torchvision's FashionMNIST looks."""
    raw = data_dir / "FashionMNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if all((raw / name).exists() for name in names):
        return True
    if not all((SHIPPED_FASHION_MNIST / f"{name}.gz").exists() for name in names):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        with gzip.open(SHIPPED_FASHION_MNIST / f"{name}.gz", "rb") as src, atomic_write(raw / name) as dst:
            shutil.copyfileobj(src, dst)
    return True


def _torchvision_split(cls, data_dir: Path, train: bool, download: bool):
    try:
        dataset = cls(str(data_dir), train=train, download=download)
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted. You can use download=True"
        raise FileNotFoundError(
            f"{cls.__name__} is missing or incomplete under data.data_dir={str(data_dir)!r} ({error}); pass "
            "data.data_dir=DIR that holds it, or data.download=true (needs internet)"
        ) from error
    images = torch.as_tensor(dataset.data)
    images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images.unsqueeze(1)
    return images.contiguous(), torch.as_tensor(dataset.targets)


def load_torchvision(name: str, data_dir: Path, download: bool):
    import torchvision.datasets as tvd

    cls = {"fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    return _torchvision_split(cls, data_dir, True, download), _torchvision_split(cls, data_dir, False, download)


def load_digits(test_size: int = 297):
    """scikit-learn's 8×8 digits (grey levels 0..16) rescaled to the 8-bit grid."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.as_tensor(bunch.images * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(bunch.target)
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    images, labels = images[perm], labels[perm]
    return (images[test_size:], labels[test_size:]), (images[:test_size], labels[:test_size])


SHAPES = {"fashion_mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32), "digits": (1, 8, 8)}


def average_pool(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 images [B, C, H, W] → uint8 [B, C, side, side]: each pixel the mean of the source pixels its cell
    covers (torch's adaptive average pooling: exact 2×2 means for 28 → 14; cells of 2 or 3 pixels for 28 → 16),
    rounded back to the 8-bit grid so discrete likelihoods stay defined."""
    if images.shape[-2:] == (side, side):
        return images
    return F.adaptive_avg_pool2d(images.float(), side).round().clamp(0, 255).to(torch.uint8)


class ImageDataModule(InMemoryDataModule):
    """Fixed train/val/test splits of an image dataset, held as uint8 tensors, batches in [−1, 1].

    `resolution`: a side in pixels to average-pool every image down to (`average_pool`; the CPU-sized image study
    trains at 16×16), or None for the data set's own size."""

    kind = "image"

    def __init__(
        self,
        name: str = "fashion_mnist",
        data_dir: str = "~/.cache/divlab/data",
        download: bool = False,
        batch_size: int = 128,
        val_size: int = 5_000,
        binarize: bool = False,
        num_workers: int = 0,
        split_seed: int = 0,
        resolution: int | None = None,
    ):
        super().__init__()
        check_choice("image dataset", name, SHAPES)
        check_positive("data.batch_size", batch_size)
        check_positive("data.val_size", val_size)
        channels, height, width = SHAPES[name]
        if resolution is not None and not (isinstance(resolution, int) and 1 <= resolution <= min(height, width)):
            raise ValueError(f"data.resolution={resolution!r} must be a whole number of pixels from 1 to {name}'s "
                             f"{min(height, width)} (images are average-pooled down to it), or null for "
                             f"{height}×{width}")
        self.save_hyperparameters()
        self.name = name
        self.sample_shape = (channels, resolution, resolution) if resolution else SHAPES[name]
        self.data_dir = Path(data_dir).expanduser()
        self._check_available()

    def _check_available(self) -> None:
        if self.name == "digits" or self.hparams.download:
            return
        folder = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "cifar-10-batches-py"}[self.name]
        if (self.data_dir / folder).exists():
            return
        if self.name == "fashion_mnist" and SHIPPED_FASHION_MNIST.exists():
            return
        hint = " or install Debian's dataset-fashion-mnist" if self.name == "fashion_mnist" else ""
        raise FileNotFoundError(
            f"{self.name} not found under data.data_dir={str(self.data_dir)!r} (looked for {folder}/); "
            f"pass data.data_dir=DIR that holds it, data.download=true (needs internet){hint}"
        )

    def prepare_data(self) -> None:
        if self.name == "fashion_mnist" and not self.hparams.download:
            install_shipped_fashion_mnist(self.data_dir)
        elif self.name != "digits":
            load_torchvision(self.name, self.data_dir, self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "splits"):
            return
        if self.name == "digits":
            (train_x, train_y), (test_x, test_y) = load_digits()
        else:
            self.prepare_data()
            (train_x, train_y), (test_x, test_y) = load_torchvision(self.name, self.data_dir, False)
        if self.hparams.resolution:
            train_x, test_x = (average_pool(x, self.hparams.resolution) for x in (train_x, test_x))
        val_size = min(self.hparams.val_size, len(train_x) // 10)
        perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        val_idx, train_idx = perm[:val_size], perm[val_size:]
        self.splits = {
            "train": (train_x[train_idx], train_y[train_idx]),
            "val": (train_x[val_idx], train_y[val_idx]),
            "test": (test_x, test_y),
        }

    def real_samples(self, split: str, n: int) -> torch.Tensor:
        """The first n images of a split in the batch layout (deterministic, no binarisation)."""
        return self.real_images(split, n)

    def real_images(self, split: str, n: int) -> torch.Tensor:
        """The first n images of a split in [−1, 1], [n, C, H, W] (what image metrics compare samples with)."""
        self.setup()
        return to_unit_range(self.splits[split][0][:n])

    def samples_as_images(self, samples: torch.Tensor) -> torch.Tensor:
        """A model's samples as images in [−1, 1] (the image families' samples already are)."""
        return samples

    def labels(self, split: str) -> torch.Tensor:
        self.setup()
        return self.splits[split][1]

    def dataset(self, split: str) -> BatchedTensorDataset:
        decode = functools.partial(to_unit_range, binarize=self.hparams.binarize)
        return BatchedTensorDataset(self.splits[split][0], decode)
