"""Discrete-time noise schedules β_1..β_T and the quantities DDPM derives from them.

Code indexes timesteps t = 0..T−1 for the paper's t = 1..T, so `betas[t]` is β_{t+1}.
All tables are float64 (ᾱ_t of the cosine schedule spans many orders of magnitude); `at`
gathers one entry per example and casts it to the data's dtype.
"""
import math
from dataclasses import dataclass, fields

import torch

from divlab.validation import check_choice, check_positive


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020): β_t linear from β_1 = 1e-4 to β_T = 0.02 at T = 1000, scaled by 1000/T
    so that other T give the same continuous-time process."""
    scale = 1000.0 / T
    if scale * beta_T >= 1:
        raise ValueError(f"linear schedule: β_T = {beta_T}·1000/T must be < 1, so T must exceed "
                         f"{1000 * beta_T:g}; got T={T}")
    return torch.linspace(scale * beta_1, scale * beta_T, T, dtype=torch.float64)


def cosine_alpha_bar(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal (2021): f(u) = cos²((u + s)/(1 + s) · π/2), ᾱ(u) = f(u)/f(0), u = t/T ∈ [0, 1]."""
    f_t = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    f_0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f_t / f_0


def betas_for_alpha_bar(alpha_bar, T: int, max_beta: float = 0.999) -> torch.Tensor:
    """β_t = min(1 − ᾱ(t/T)/ᾱ((t−1)/T), max_beta) for a continuous ᾱ: [0, 1] → (0, 1]."""
    u = torch.arange(T + 1, dtype=torch.float64) / T
    a = alpha_bar(u)
    return (1 - a[1:] / a[:-1]).clamp(max=max_beta)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    return betas_for_alpha_bar(lambda u: cosine_alpha_bar(u, s), T, max_beta)


BETA_SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def gather(table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """table[t] for each example, shaped (B, 1, ..., 1) to broadcast against x, in x's dtype."""
    return table.to(t.device)[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


@dataclass(frozen=True)
class NoiseSchedule:
    """β_t and what q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) and the posterior
    q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) need (Ho et al. 2020, eqs. 4, 6, 7):

    α_t = 1 − β_t,  ᾱ_t = Π_{s≤t} α_s,  ᾱ_0 = 1,
    β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t),
    μ̃_t = [√ᾱ_{t−1} β_t / (1 − ᾱ_t)] x_0 + [√α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)] x_t.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xt: torch.Tensor

    @property
    def T(self) -> int:
        return self.betas.shape[0]

    def at(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return gather(getattr(self, name), t, x)

    def to(self, device) -> "NoiseSchedule":
        return NoiseSchedule(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def noise_schedule(betas: torch.Tensor) -> NoiseSchedule:
    betas = betas.to(torch.float64)
    alphas = 1 - betas
    alphas_cumprod = torch.cumprod(alphas, 0)
    alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    # β̃_1 = 0: the decoder step borrows β̃_2 so its log-variance stays finite (Nichol & Dhariwal).
    clipped = torch.cat([posterior_variance[1:2], posterior_variance[1:]]) if len(betas) > 1 else betas
    return NoiseSchedule(
        betas=betas,
        alphas=alphas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=torch.log(clipped),
        posterior_mean_coef_x0=alphas_cumprod_prev.sqrt() * betas / (1 - alphas_cumprod),
        posterior_mean_coef_xt=alphas.sqrt() * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod),
    )


def make_schedule(name: str = "linear", T: int = 1000) -> NoiseSchedule:
    check_choice("beta schedule", name, BETA_SCHEDULES)
    check_positive("T", T)
    return noise_schedule(BETA_SCHEDULES[name](T))
