"""A multilayer perceptron between tensors of any shape (flattened in, reshaped out)."""
import math

import torch
from torch import nn

from divlab.validation import check_choice

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU,
               "tanh": nn.Tanh}


class MLP(nn.Module):
    """`depth` hidden layers of `hidden` units. Options for critics: `spectral_norm` (Miyato et al.
    2018: every weight divided by its largest singular value, by power iteration, so the network is
    1-Lipschitz per layer), `init_std` (weights N(0, init_std²), biases 0, as DCGAN and PacGAN) and
    `orthogonal_gain` (weights orthogonal times the gain, biases 0, as LSGAN's toy code, Saxe et al. 2014)."""

    def __init__(self, in_shape, out_shape, hidden: int = 256, depth: int = 2, activation: str = "silu",
                 spectral_norm: bool = False, init_std: float | None = None, orthogonal_gain: float | None = None):
        super().__init__()
        if init_std is not None and orthogonal_gain is not None:
            raise ValueError(f"MLP init_std={init_std} and orthogonal_gain={orthogonal_gain} are two initialisations; "
                             "set one of them (null the other)")
        self.out_shape = tuple(out_shape)
        check_choice("MLP activation", activation, ACTIVATIONS)
        act = ACTIVATIONS[activation]
        widths = [math.prod(in_shape)] + [hidden] * depth
        linears = [nn.Linear(w_in, w_out) for w_in, w_out in zip(widths, widths[1:] + [math.prod(self.out_shape)])]
        layers = []
        for linear in linears:
            if init_std is not None:
                nn.init.normal_(linear.weight, std=init_std)
                nn.init.zeros_(linear.bias)
            if orthogonal_gain is not None:
                nn.init.orthogonal_(linear.weight, gain=orthogonal_gain)
                nn.init.zeros_(linear.bias)
            layers += [nn.utils.parametrizations.spectral_norm(linear) if spectral_norm else linear, act()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).view(-1, *self.out_shape)
