"""Reverse-process samplers for a trained DDPM, ancestral (Ho et al. 2020) and DDIM (Song et al. 2021a), as
small frozen objects holding their options, called as sampler(model, schedule, shape)."""
from dataclasses import dataclass

import numpy as np
import torch

from divlab.lightning_modules.diffusion.ddpm import ReverseProcess, p_mean_variance, predict_x0_eps
from divlab.lightning_modules.diffusion.schedules import NoiseSchedule
from divlab.validation import check_positive

Tensor = torch.Tensor


def _randn(shape, generator, device) -> Tensor:
    return torch.randn(shape, generator=generator, device=device)


def _timestep(t: int, n: int, device) -> Tensor:
    """t for each of n examples, one value expanded (stride 0): time-conditioned networks embed it once."""
    return torch.tensor(t, dtype=torch.long, device=device).expand(n)


@dataclass(frozen=True)
class AncestralSampler:
    """Ancestral sampling, Ho et al. Alg. 2: x_T ~ N(0, I), x_{t−1} = μ_θ(x_t, t) + σ_t z for t = T..1,
    with z = 0 at t = 1; μ_θ and σ_t as `reverse` reads them off the network."""

    reverse: ReverseProcess = ReverseProcess()

    @torch.no_grad()
    def __call__(self, model, schedule: NoiseSchedule, shape, *, generator: torch.Generator | None = None,
                 device=None) -> Tensor:
        x = _randn(shape, generator, device)
        for t in reversed(range(schedule.T)):
            mean, log_variance, _ = p_mean_variance(model, schedule, x, _timestep(t, shape[0], x.device), self.reverse)
            x = mean + (0.5 * log_variance).exp() * _randn(shape, generator, x.device) if t > 0 else mean
        return x


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """τ: `steps` timesteps evenly spaced over 0..T−1, including both ends, in descending order.

    The spacing of diffusers' DDIM scheduler with `timestep_spacing="linspace"`,
    `np.linspace(0, T − 1, steps).round()[::-1]`, computed in float64 as there: float32 (as
    `torch.linspace` gives by default) rounds some ties the other way, e.g. T = 1000, 15 steps gave
    499 where the reference has 500.
    """
    check_positive("DDIM steps", steps)
    if steps > T:
        raise ValueError(f"DDIM steps ({steps}) must be <= T ({T})")
    return [int(t) for t in np.linspace(0, T - 1, steps, dtype=np.float64).round()[::-1]]


def ddim_sigma(alpha_bar: Tensor, alpha_bar_prev: Tensor, eta: float) -> Tensor:
    """σ_τ(η) = η √((1 − ᾱ_prev)/(1 − ᾱ_τ)) √(1 − ᾱ_τ/ᾱ_prev), Song et al. 2021a eq. 16; η = 1 is DDPM's β̃."""
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()


@dataclass(frozen=True)
class DDIMSampler:
    """DDIM, Song et al. 2021a eq. 12, over the sub-sequence τ of `ddim_timesteps(T, steps)`:

    x_{τ−1} = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ_τ²) ε̂ + σ_τ z,  ᾱ_prev = 1 after the last step.

    η = `eta` = 0 is deterministic given x_T; η = 1 with steps = T is ancestral DDPM with σ_t² = β̃_t.
    Of `reverse`, DDIM reads the target and clipping (its variance is σ_τ(η), its last step the mean).
    """

    steps: int = 50
    eta: float = 0.0
    reverse: ReverseProcess = ReverseProcess()

    def __post_init__(self):
        check_positive("DDIM steps", self.steps)
        check_positive("eta", self.eta, allow_zero=True)

    @torch.no_grad()
    def __call__(self, model, schedule: NoiseSchedule, shape, *, generator: torch.Generator | None = None,
                 device=None) -> Tensor:
        x = _randn(shape, generator, device)
        taus = ddim_timesteps(schedule.T, self.steps)
        for tau, tau_prev in zip(taus, taus[1:] + [-1]):
            t = _timestep(tau, shape[0], x.device)
            x0, eps = predict_x0_eps(model, schedule, x, t, self.reverse)
            alpha_bar = schedule.alphas_cumprod[tau]
            alpha_bar_prev = schedule.alphas_cumprod[tau_prev] if tau_prev >= 0 else alpha_bar.new_tensor(1.0)
            sigma = ddim_sigma(alpha_bar, alpha_bar_prev, self.eta)
            direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt()
            x = alpha_bar_prev.sqrt().to(x.dtype) * x0 + direction.to(x.dtype) * eps
            sigma = sigma.to(x.dtype)
            if tau_prev >= 0 and self.eta > 0:
                x = x + sigma * _randn(shape, generator, x.device)
        return x
