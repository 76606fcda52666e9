"""Convolutional encoder and decoder for square images whose side is divisible by 4 (8, 28, 32)."""
import math

import torch
from torch import nn

from divlab.lightning_modules.networks.image_shape import check_image_shape


class ConvEncoder(nn.Module):
    """(C, H, W) → out_shape: two stride-2 convolutions to H/4, then a linear head."""

    def __init__(self, in_shape, out_shape, width: int = 32):
        super().__init__()
        channels, side, _ = check_image_shape(in_shape, "ConvEncoder")
        low = side // 4
        self.out_shape = tuple(out_shape)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * low * low, math.prod(self.out_shape)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, *self.out_shape)


class ConvDecoder(nn.Module):
    """in_shape → (C_out, H, W): a linear map to H/4, then two stride-2 transposed convolutions."""

    def __init__(self, in_shape, out_shape, width: int = 32):
        super().__init__()
        channels, side, _ = check_image_shape(out_shape, "ConvDecoder")
        self.low = side // 4
        self.width = width
        self.project = nn.Sequential(nn.Linear(math.prod(in_shape), 2 * width * self.low**2), nn.SiLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z.flatten(1)).view(-1, 2 * self.width, self.low, self.low)
        return self.net(h)
