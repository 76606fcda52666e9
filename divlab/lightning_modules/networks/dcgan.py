"""DCGAN-style generator and critic (Radford et al. 2016) for small images.

Two stride-2 stages each way, so any height and width divisible by 4 work (8×8 digits, 28×28
MNIST, 32×32 CIFAR): the generator starts from a (2·width)×(H/4)×(W/4) map, the critic ends on one.
"""
import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from divlab.lightning_modules.networks.image_shape import check_image_shape
from divlab.validation import check_positive


def _quarter_size(image_shape) -> tuple[int, int]:
    """(H/4, W/4) for an image shape (C, H, W); ValueError naming the shape (and networks=mlp) otherwise."""
    _, height, width = check_image_shape(image_shape, "DCGAN")
    return height // 4, width // 4


class DCGANGenerator(nn.Module):
    """noise [B, *in_shape] → image [B, *out_shape] in [−1, 1], out_shape = (C, H, W)."""

    def __init__(self, in_shape, out_shape, width: int = 64):
        super().__init__()
        channels = out_shape[0]
        self.base = _quarter_size(out_shape)
        self.width = check_positive("width", width)
        base_pixels = math.prod(self.base)
        self.project = nn.Sequential(
            nn.Linear(math.prod(in_shape), 2 * width * base_pixels, bias=False),
            nn.BatchNorm1d(2 * width * base_pixels),
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
        h = self.project(z.flatten(1)).view(-1, 2 * self.width, *self.base)
        return self.upsample(h)


class DCGANCritic(nn.Module):
    """image [B, *in_shape] → raw score V [B, *out_shape] (out_shape () gives [B]).

    No batch norm: it couples examples in a batch, which breaks the per-example gradient
    penalties (WGAN-GP, R1). `spectral_norm=True` bounds each layer's Lipschitz constant
    (Miyato et al. 2018), the usual partner of the hinge loss.
    """

    def __init__(self, in_shape, out_shape=(), width: int = 64, spectral_norm: bool = False):
        super().__init__()
        channels = in_shape[0]
        base = _quarter_size(in_shape)
        check_positive("width", width)
        self.out_shape = tuple(out_shape)
        norm = _spectral_norm if spectral_norm else (lambda layer: layer)
        self.net = nn.Sequential(
            norm(nn.Conv2d(channels, width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            norm(nn.Linear(2 * width * math.prod(base), math.prod(self.out_shape))),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, *self.out_shape)
