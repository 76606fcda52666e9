"""A maxout network (Goodfellow et al. 2013): each hidden unit is the max over `pieces` linear maps.
The PacGAN and VEEGAN 2-D experiments use it as the discriminator (3 layers of 200 units, 5 pieces)."""
import math

import torch
from torch import nn

from divlab.validation import check_choice


class Maxout(nn.Module):
    def __init__(self, in_features: int, out_features: int, pieces: int, init_std: float | None = None):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)
        if init_std is not None:
            nn.init.normal_(self.linear.weight, std=init_std)
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(*x.shape[:-1], self.out_features, self.pieces).amax(-1)


class MaxoutMLP(nn.Module):
    """`depth` maxout layers of `hidden` units with `pieces` pieces each, then a linear output.

    Same keys as `MLP` (hidden, depth, activation, init_std), so a config swaps one for the other;
    `activation` can only be "maxout": the max over pieces is the nonlinearity.
    """

    def __init__(self, in_shape, out_shape, hidden: int = 200, depth: int = 3, pieces: int = 5,
                 activation: str = "maxout", init_std: float | None = None):
        super().__init__()
        check_choice("critic activation of a maxout network", activation, ("maxout",))
        self.out_shape = tuple(out_shape)
        widths = [math.prod(in_shape)] + [hidden] * depth
        self.hidden = nn.Sequential(*(Maxout(a, b, pieces, init_std) for a, b in zip(widths[:-1], widths[1:])))
        self.out = nn.Linear(widths[-1], math.prod(self.out_shape))
        if init_std is not None:
            nn.init.normal_(self.out.weight, std=init_std)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x.flatten(1))).view(-1, *self.out_shape)
