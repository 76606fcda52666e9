"""DCGAN-style generator and critic (Radford et al. 2016) for small square images.

Two stride-2 stages each way, so any side divisible by 4 works (8×8 digits, 28×28 MNIST,
32×32 CIFAR): the generator starts from a (2·width)×(S/4)×(S/4) map, the critic ends on one.
"""
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from divlab.validation import check_positive


def _check_image_size(image_size: int) -> int:
    check_positive("image_size", image_size)
    if image_size % 4:
        raise ValueError(f"image_size must be divisible by 4 (two stride-2 stages), got {image_size}")
    return image_size


class DCGANGenerator(nn.Module):
    """z [B, z_dim] → image [B, channels, S, S] in [−1, 1]."""

    def __init__(self, z_dim: int = 64, channels: int = 1, image_size: int = 28, width: int = 64):
        super().__init__()
        self.z_dim = check_positive("z_dim", z_dim)
        self.base = _check_image_size(image_size) // 4
        self.width = check_positive("width", width)
        check_positive("channels", channels)
        self.project = nn.Sequential(
            nn.Linear(z_dim, 2 * width * self.base**2, bias=False),
            nn.BatchNorm1d(2 * width * self.base**2),
            nn.ReLU(),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(-1, 2 * self.width, self.base, self.base)
        return self.upsample(h)


class DCGANCritic(nn.Module):
    """image [B, channels, S, S] → raw score V [B].

    No batch norm: it couples examples in a batch, which breaks the per-example gradient
    penalties (WGAN-GP, R1). `spectral_norm=True` bounds each layer's Lipschitz constant
    (Miyato et al. 2018), the usual partner of the hinge loss.
    """

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 64, spectral_norm: bool = False):
        super().__init__()
        base = _check_image_size(image_size) // 4
        check_positive("width", width)
        check_positive("channels", channels)
        norm = _spectral_norm if spectral_norm else (lambda layer: layer)
        self.net = nn.Sequential(
            norm(nn.Conv2d(channels, width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            norm(nn.Linear(2 * width * base**2, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
