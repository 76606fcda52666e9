"""A multilayer perceptron between tensors of any shape (flattened in, reshaped out)."""
import math

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_shape, out_shape, hidden: int = 256, depth: int = 2, activation: str = "silu"):
        super().__init__()
        self.out_shape = tuple(out_shape)
        act = {"silu": nn.SiLU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}[activation]
        widths = [math.prod(in_shape)] + [hidden] * depth
        layers = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), act()]
        layers.append(nn.Linear(widths[-1], math.prod(self.out_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).view(-1, *self.out_shape)
