"""What the network predicts in a variance-preserving diffusion x_t = a_t x_0 + σ_t ε, a_t² + σ_t² = 1.

DDPM has a_t = √ᾱ_t, σ_t = √(1 − ᾱ_t); the VP SDE has the same form with continuous t. Each
target maps (x_0, ε) to the regression target and a prediction back to (x̂_0, ε̂):

- `eps`: ε (Ho et al. 2020);  x̂_0 = (x_t − σ_t ε̂) / a_t.
- `x0`:  x_0;                 ε̂ = (x_t − a_t x̂_0) / σ_t.
- `v`:   v = a_t ε − σ_t x_0 (Salimans & Ho 2022);  x̂_0 = a_t x_t − σ_t v̂,  ε̂ = σ_t x_t + a_t v̂.

Relative to the ε-loss ‖ε − ε̂‖², the simple MSE on each target weights timesteps by
(SNR_t = a_t² / σ_t²):  ‖x_0 − x̂_0‖² = SNR_t⁻¹ ‖ε − ε̂‖²,  ‖v − v̂‖² = (1 + SNR_t⁻¹) ‖ε − ε̂‖²
= (1 + SNR_t) ‖x_0 − x̂_0‖².
"""
from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Target:
    target: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
    to_x0_eps: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def _eps_to_x0_eps(pred, x_t, a, sigma):
    return (x_t - sigma * pred) / a, pred


def _x0_to_x0_eps(pred, x_t, a, sigma):
    return pred, (x_t - a * pred) / sigma


def _v_to_x0_eps(pred, x_t, a, sigma):
    return a * x_t - sigma * pred, sigma * x_t + a * pred


TARGETS = {
    "eps": Target(target=lambda x0, eps, a, sigma: eps, to_x0_eps=_eps_to_x0_eps),
    "x0": Target(target=lambda x0, eps, a, sigma: x0, to_x0_eps=_x0_to_x0_eps),
    "v": Target(target=lambda x0, eps, a, sigma: a * eps - sigma * x0, to_x0_eps=_v_to_x0_eps),
}


def regression_target(name: str, x0: Tensor, eps: Tensor, a: Tensor, sigma: Tensor) -> Tensor:
    return TARGETS[name].target(x0, eps, a, sigma)


def prediction_to_x0_eps(name: str, pred: Tensor, x_t: Tensor, a: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """(x̂_0, ε̂) implied by a network output `pred` of target `name` at x_t."""
    return TARGETS[name].to_x0_eps(pred, x_t, a, sigma)


def clip_x0(x0: Tensor, x_t: Tensor, a: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """(x̂_0 clamped to the data's range [−1, 1], the ε̂ = (x_t − a_t x̂_0)/σ_t that goes with it)."""
    x0 = x0.clamp(-1, 1)
    return x0, (x_t - a * x0) / sigma
