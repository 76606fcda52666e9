"""Forward SDEs dx = f(x, t) dt + g(t) dw on t ∈ [0, 1] (Song et al. 2021b), with Gaussian
perturbation kernels p_0t(x_t | x_0) = N(a_t x_0, σ_t² I).

Times are float tensors [B]; every method returns per-example values, broadcast over data dims
where it returns data-shaped tensors. `sampling_eps` is where samplers stop (Song et al.'s choice:
1e-3 for VP, 1e-5 for VE); training and likelihoods use t ≥ MIN_TIME = 1e-5. `log_snr(t)` = log(a_t²/σ_t²)
and its inverse `time_at_log_snr` place a sampler's steps evenly in log-SNR.
"""
import math

import torch

from divlab.lightning_modules.likelihoods import gaussian_log_prob, sum_over_dims
from divlab.validation import check_positive

Tensor = torch.Tensor
MIN_TIME = 1e-5  # the smallest time training (dsm_loss) and the likelihood's ODE see


def expand_as_data(v: Tensor, x: Tensor) -> Tensor:
    """[B] → [B, 1, ..., 1] to broadcast against x."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def check_min_below_max(name: str, low: float, high: float) -> None:
    """0 < `<name>_min` < `<name>_max`, or an error naming both."""
    check_positive(f"{name}_min", low)
    if high <= low:
        raise ValueError(f"{name}_max ({high}) must exceed {name}_min ({low})")


class VPSDE:
    """Variance preserving: dx = −½ β(t) x dt + √β(t) dw, β(t) = β_min + t (β_max − β_min).

    a_t = exp(−¼ t² (β_max − β_min) − ½ t β_min),  σ_t² = 1 − a_t²,  prior N(0, I).
    The continuous limit of DDPM's linear schedule (β_min = 0.1, β_max = 20 ↔ T = 1000).
    """

    sampling_eps = 1e-3

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        check_min_below_max("beta", beta_min, beta_max)
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def mean_coeff(self, t: Tensor) -> Tensor:
        return self.log_mean_coeff(t).exp()

    def std(self, t: Tensor) -> Tensor:
        return (-torch.expm1(2 * self.log_mean_coeff(t))).sqrt()

    def log_snr(self, t: Tensor) -> Tensor:
        """λ_t = log(a_t² / σ_t²) = −log(e^{B_t} − 1), B_t = β_min t + ½ (β_max − β_min) t² = −2 log a_t."""
        return -torch.log(torch.expm1(-2 * self.log_mean_coeff(t)))

    def time_at_log_snr(self, log_snr: Tensor) -> Tensor:
        """The t with λ_t = log_snr: B = log(1 + e^{−λ}), the positive root of ½ Δ t² + β_min t − B = 0
        (Δ = β_max − β_min), written 2B / (β_min + √(β_min² + 2ΔB)) so small t loses no digits."""
        b = torch.nn.functional.softplus(-log_snr)
        delta = self.beta_max - self.beta_min
        return 2 * b / (self.beta_min + (self.beta_min**2 + 2 * delta * b).sqrt())

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -0.5 * expand_as_data(self.beta(t), x) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def prior_sample(self, shape, generator: torch.Generator | None = None, device=None) -> Tensor:
        return torch.randn(shape, generator=generator, device=device)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, I) per example."""
        return sum_over_dims(gaussian_log_prob(x, torch.zeros_like(x), torch.zeros_like(x)))

    def langevin_alpha(self, t: Tensor, dt: float) -> Tensor:
        """α_i = 1 − β_i with β_i = β(t) dt, the discrete DDPM α the Langevin step size scales by (Song Alg. 5).

        Clamped at 0 where β(t) dt > 1 (fewer than β_max steps): there α_i < 0 has no meaning and the
        step size would be negative, so the corrector makes no move."""
        return (1 - self.beta(t) * dt).clamp(min=0)


class VESDE:
    """Variance exploding: dx = σ(t) √(2 log(σ_max/σ_min)) dw, σ(t) = σ_min (σ_max/σ_min)^t.

    a_t = 1,  σ_t = σ(t),  prior N(0, σ_max² I). As in Song et al.'s code, σ_t is σ(t) itself, so the
    process at t = 0 is the data convolved with N(0, σ_min² I).
    """

    sampling_eps = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        check_min_below_max("sigma", sigma_min, sigma_max)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def mean_coeff(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def std(self, t: Tensor) -> Tensor:
        return self.sigma(t)

    def log_snr(self, t: Tensor) -> Tensor:
        """λ_t = log(1 / σ(t)²) = −2 (log σ_min + t log(σ_max/σ_min)): linear in t."""
        return -2 * (math.log(self.sigma_min) + t * math.log(self.sigma_max / self.sigma_min))

    def time_at_log_snr(self, log_snr: Tensor) -> Tensor:
        return (-0.5 * log_snr - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))

    def prior_sample(self, shape, generator: torch.Generator | None = None, device=None) -> Tensor:
        return self.sigma_max * torch.randn(shape, generator=generator, device=device)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, σ_max² I) per example."""
        return sum_over_dims(gaussian_log_prob(x, torch.zeros_like(x), torch.full_like(x, math.log(self.sigma_max))))

    def langevin_alpha(self, t: Tensor, dt: float) -> Tensor:
        return torch.ones_like(t)


def marginal_mean_std(sde, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """p_0t(x_t | x_0) = N(a_t x_0, σ_t² I): returns (a_t x_0, σ_t broadcast against x_0)."""
    return expand_as_data(sde.mean_coeff(t), x0) * x0, expand_as_data(sde.std(t), x0)
