import math

import pytest
import torch

from divlab.datamodules.images import ImageDataModule
from divlab.datamodules.toy2d import Toy2DDataModule


@pytest.mark.parametrize("name, extent", [("ring8", 1.6), ("grid25", 5.5)])
def test_toy_mixture_log_prob_integrates_to_one(name, extent):
    data = Toy2DDataModule(name, sigma=0.1)
    n = 801
    axis = torch.linspace(-extent, extent, n, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis).float()
    cell = (axis[1] - axis[0]).item() ** 2
    total = data.log_prob(grid).double().exp().sum().item() * cell
    assert abs(total - 1.0) < 1e-3


def test_toy_samples_come_from_the_mixture():
    data = Toy2DDataModule("ring8")
    data.setup()
    x = data.real_samples("train", 5000)
    nearest = torch.cdist(x, data.centres).min(1).values
    within_3_sigma = 1 - math.exp(-4.5)  # P(χ²₂ < 9) for an isotropic 2-D Gaussian
    assert abs((nearest < 3 * 0.01).float().mean().item() - within_3_sigma) < 0.005
    assert torch.isfinite(data.log_prob(x)).all()
    assert Toy2DDataModule("ring8").real_samples("val", 10).equal(data.real_samples("val", 10))


def test_fashion_mnist_has_60k_train_10k_test_in_range(tmp_path):
    data = ImageDataModule("fashion_mnist", data_dir=str(tmp_path))
    data.setup()
    sizes = {split: len(images) for split, (images, _) in data.splits.items()}
    assert sizes["train"] + sizes["val"] == 60_000 and sizes["test"] == 10_000
    batch = next(iter(data.train_dataloader()))
    assert batch.shape == (128, 1, 28, 28) and batch.dtype == torch.float32
    assert batch.min() == -1 and batch.max() == 1
    assert len(torch.unique(data.real_samples("test", 64))) > 100


def test_binarised_batches_are_plus_minus_one():
    data = ImageDataModule("digits", binarize=True, batch_size=32)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert set(torch.unique(batch).tolist()) <= {-1.0, 1.0}


def test_missing_data_dir_without_download_names_the_fix(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="data.download=true"):
        ImageDataModule("cifar10", data_dir=str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ImageDataModule("imagenet"), "unknown image dataset 'imagenet'; valid choices: cifar10, digits"),
        (lambda: ImageDataModule("digits", batch_size=0), "data.batch_size must be > 0"),
        (lambda: Toy2DDataModule("spiral"), "unknown toy dataset 'spiral'; valid choices: grid25, moons, ring8"),
        (lambda: Toy2DDataModule("ring8", batch_size=-4), "data.batch_size must be > 0"),
    ],
)
def test_bad_data_options_fail_early(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_incomplete_torchvision_data_names_the_settings(tmp_path):
    from divlab.datamodules.images import ImageDataModule

    (tmp_path / "MNIST" / "raw").mkdir(parents=True)  # a folder left by an interrupted download
    data = ImageDataModule("mnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match=r"MNIST is missing or incomplete under "
                       r"data.data_dir=.*data.download=true"):
        data.setup()


def test_pooled_images_are_the_rounded_means_of_the_pixels_each_cell_covers():
    from divlab.datamodules.images import average_pool

    images = torch.randint(0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    halved = images.double().view(3, 1, 14, 2, 14, 2).mean(dim=(3, 5))  # 2×2 blocks, by hand
    assert torch.equal(average_pool(images, 14), halved.round().to(torch.uint8))
    # 28 → 16: cell i covers source rows floor(28i/16) .. ceil(28(i+1)/16) − 1 (2 or 3 of them), the same for columns
    pooled = average_pool(images, 16)
    for i, j in [(0, 0), (1, 5), (7, 15), (15, 15)]:
        rows = range(math.floor(28 * i / 16), math.ceil(28 * (i + 1) / 16))
        cols = range(math.floor(28 * j / 16), math.ceil(28 * (j + 1) / 16))
        cell = images[:, 0, rows.start:rows.stop, cols.start:cols.stop].double().mean(dim=(1, 2))
        assert torch.equal(pooled[:, 0, i, j], cell.round().to(torch.uint8)), (i, j)
    assert average_pool(images, 28) is images


def test_a_pooled_data_set_serves_its_resolution_everywhere(tmp_path):
    data = ImageDataModule("digits", val_size=150, resolution=4)
    data.setup()
    assert data.sample_shape == (1, 4, 4) and data.real_images("test", 5).shape == (5, 1, 4, 4)
    assert next(iter(data.train_dataloader())).shape[1:] == (1, 4, 4)
    for bad in (0, 9, 2.5):
        with pytest.raises(ValueError, match=rf"data.resolution={bad!r} must be a whole number of pixels from 1 to "
                                             r"digits's 8 .* or null for 8×8"):
            ImageDataModule("digits", resolution=bad)
