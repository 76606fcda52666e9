"""2-D toy data with a known density: Gaussian mixtures (ring8, grid25) and two moons."""
import math

import torch

from divlab.datamodules.tensor_data import BatchedTensorDataset, InMemoryDataModule
from divlab.validation import check_choice, check_positive


def ring_centres(n_modes: int = 8, radius: float = 1.0) -> torch.Tensor:
    """Means (r cos 2πi/n, r sin 2πi/n), i = 0..n−1 (VEEGAN/PacGAN ring)."""
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def grid_centres(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """Means on {−(side−1)/2, …, (side−1)/2}² · spacing ({−4, −2, 0, 2, 4}² by default)."""
    axis = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(axis, axis)


class GaussianMixture2D:
    """Uniform mixture of isotropic Gaussians N(μ_k, σ² I) with exact `log_prob`."""

    def __init__(self, centres: torch.Tensor, sigma: float):
        self.centres = centres.float()
        self.sigma = float(check_positive("sigma", sigma))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = torch.randint(len(self.centres), (n,), generator=generator)
        return self.centres[idx] + self.sigma * torch.randn(n, 2, generator=generator)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_k [log N(x; μ_k, σ² I)] − log K."""
        centres = self.centres.to(x)
        sq = torch.cdist(x, centres).pow(2)
        log_norm = -math.log(2 * math.pi * self.sigma**2)
        return torch.logsumexp(log_norm - sq / (2 * self.sigma**2), dim=1) - math.log(len(centres))


class TwoMoons:
    """Two interleaving half circles with Gaussian noise (scikit-learn's make_moons); no exact density."""

    centres = None

    def __init__(self, noise: float = 0.05):
        self.sigma = float(check_positive("noise", noise))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        t = math.pi * torch.rand(n, generator=generator)
        upper = torch.rand(n, generator=generator) < 0.5
        x = torch.where(upper, t.cos(), 1 - t.cos())
        y = torch.where(upper, t.sin(), 0.5 - t.sin())
        return torch.stack([x, y], 1) + self.sigma * torch.randn(n, 2, generator=generator)


def make_distribution(name: str, sigma: float | None = None, radius: float = 1.0):
    check_choice("toy dataset", name, TOY_DISTRIBUTIONS)
    return TOY_DISTRIBUTIONS[name](sigma, radius)


TOY_DISTRIBUTIONS = {
    "ring8": lambda sigma, radius: GaussianMixture2D(ring_centres(8, radius), 0.01 if sigma is None else sigma),
    "grid25": lambda sigma, radius: GaussianMixture2D(grid_centres(5, 2.0), 0.05 if sigma is None else sigma),
    "moons": lambda sigma, radius: TwoMoons(0.05 if sigma is None else sigma),
}


class Toy2DDataModule(InMemoryDataModule):
    """Fixed train/val/test samples of a 2-D toy distribution, generated from `data_seed`."""

    kind = "points"
    sample_shape = (2,)

    def __init__(
        self,
        name: str = "ring8",
        sigma: float | None = None,
        radius: float = 1.0,
        n_train: int = 50_000,
        n_val: int = 5_000,
        n_test: int = 5_000,
        batch_size: int = 256,
        data_seed: int = 1234,
        num_workers: int = 0,
    ):
        super().__init__()
        self.distribution = make_distribution(name, sigma, radius)
        for key in ("n_train", "n_val", "n_test", "batch_size"):
            check_positive(f"data.{key}", locals()[key])
        self.save_hyperparameters()
        self.name = name

    @property
    def centres(self) -> torch.Tensor | None:
        return self.distribution.centres

    @property
    def sigma(self) -> float:
        return self.distribution.sigma

    @property
    def has_log_prob(self) -> bool:
        return hasattr(self.distribution, "log_prob")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.distribution.log_prob(x)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "splits"):
            return
        gen = torch.Generator().manual_seed(self.hparams.data_seed)
        sizes = {"train": self.hparams.n_train, "val": self.hparams.n_val, "test": self.hparams.n_test}
        self.splits = {split: self.distribution.sample(n, gen) for split, n in sizes.items()}

    def real_samples(self, split: str, n: int) -> torch.Tensor:
        self.setup()
        return self.splits[split][:n]

    def dataset(self, split: str) -> BatchedTensorDataset:
        return BatchedTensorDataset(self.splits[split])
