"""DDPM (Ho et al. 2020): the forward process q, its posterior, the reverse model p_θ, and the loss.

Timesteps are integers t = 0..T−1 (the paper's 1..T); the network is called as model(x_t, t)
with t a LongTensor [B] and returns a tensor shaped like x_t holding the chosen target
(`eps`, `x0` or `v`, see `parameterization`).
"""
from dataclasses import dataclass

import torch

from divlab.lightning_modules.diffusion.parameterization import (
    TARGETS,
    clip_x0,
    prediction_to_x0_eps,
    regression_target,
)
from divlab.lightning_modules.diffusion.schedules import NoiseSchedule, gather
from divlab.lightning_modules.likelihoods import discretized_gaussian_log_likelihood, gaussian_log_prob
from divlab.validation import check_choice

Tensor = torch.Tensor


def signal_and_noise_scales(schedule: NoiseSchedule, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """(√ᾱ_t, √(1 − ᾱ_t)), broadcastable against x."""
    alpha_bar = schedule.at("alphas_cumprod", t, x)
    return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()


def q_mean_variance(schedule: NoiseSchedule, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)."""
    alpha_bar = schedule.at("alphas_cumprod", t, x0)
    return alpha_bar.sqrt() * x0, (1 - alpha_bar).expand_as(x0)


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε."""
    a, sigma = signal_and_noise_scales(schedule, t, x0)
    return a * x0 + sigma * eps


def q_posterior_mean_variance(
    schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """q(x_{t−1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I), eqs. 6–7; returns (μ̃, β̃, log β̃ clipped at t = 1)."""
    mean = schedule.at("posterior_mean_coef_x0", t, x_t) * x0 + schedule.at("posterior_mean_coef_xt", t, x_t) * x_t
    variance = schedule.at("posterior_variance", t, x_t).expand_as(x_t)
    log_variance = schedule.at("posterior_log_variance_clipped", t, x_t).expand_as(x_t)
    return mean, variance, log_variance


def _fixed_small(schedule: NoiseSchedule) -> Tensor:
    return schedule.posterior_log_variance_clipped


def _fixed_large(schedule: NoiseSchedule) -> Tensor:
    return torch.log(torch.cat([schedule.posterior_variance[1:2], schedule.betas[1:]]))


# σ_t² of p_θ(x_{t−1} | x_t): β̃_t (optimal for a point-mass x_0) or β_t (optimal for x_0 ~ N(0, I)),
# Ho et al. 2020 §3.2; both borrow β̃_2 at t = 1 so the decoder's variance is positive.
REVERSE_LOG_VARIANCES = {"fixed_small": _fixed_small, "fixed_large": _fixed_large}

# p_θ(x_0 | x_1): discretised to the 8-bit grid of [−1, 1] for images (Ho et al. eq. 13), or continuous.
DECODERS = {"discretized": discretized_gaussian_log_likelihood, "gaussian": gaussian_log_prob}


@dataclass(frozen=True)
class ReverseProcess:
    """How p_θ(x_{t−1} | x_t) is read off the network, checked once and shared by the bound and the
    samplers: the prediction `target` (eps | x0 | v), the reverse `variance` (fixed_small: β̃_t,
    fixed_large: β_t), the `decoder` p_θ(x_0 | x_1) (discretized | gaussian), and `clip_denoised`
    (x̂_0 clamped to [−1, 1], for images)."""

    target: str = "eps"
    variance: str = "fixed_small"
    decoder: str = "discretized"
    clip_denoised: bool = False

    def __post_init__(self):
        check_choice("model.target", self.target, TARGETS)
        check_choice("model.variance", self.variance, REVERSE_LOG_VARIANCES)
        check_choice("model.decoder", self.decoder, DECODERS)


def predict_x0_eps(
    model, schedule: NoiseSchedule, x_t: Tensor, t: Tensor, reverse: ReverseProcess = ReverseProcess()
) -> tuple[Tensor, Tensor]:
    """(x̂_0, ε̂) from model(x_t, t) predicting `reverse.target`; with `reverse.clip_denoised`, x̂_0 is
    clamped to [−1, 1] and ε̂ recomputed from it."""
    a, sigma = signal_and_noise_scales(schedule, t, x_t)
    x0, eps = prediction_to_x0_eps(reverse.target, model(x_t, t), x_t, a, sigma)
    return clip_x0(x0, x_t, a, sigma) if reverse.clip_denoised else (x0, eps)


def p_mean_variance(
    model, schedule: NoiseSchedule, x_t: Tensor, t: Tensor, reverse: ReverseProcess = ReverseProcess()
) -> tuple[Tensor, Tensor, Tensor]:
    """p_θ(x_{t−1} | x_t) = N(μ̃_t(x_t, x̂_0(x_t, t)), σ_t² I); returns (mean, log σ_t², x̂_0)."""
    x0, _ = predict_x0_eps(model, schedule, x_t, t, reverse)
    mean, _, _ = q_posterior_mean_variance(schedule, x0, x_t, t)
    log_variance = gather(REVERSE_LOG_VARIANCES[reverse.variance](schedule), t, x_t).expand_as(x_t)
    return mean, log_variance, x0


def diffusion_loss(
    model, schedule: NoiseSchedule, x0: Tensor, target: str = "eps", generator: torch.Generator | None = None
) -> Tensor:
    """L_simple per example: E_{t ~ U{1..T}, ε ~ N(0, I)} mean_dims (y − model(x_t, t))², y the target.

    With target `eps` this is Ho et al.'s L_simple; `x0` and `v` reweight it by SNR_t⁻¹ and
    1 + SNR_t⁻¹ respectively (see `parameterization`).
    """
    check_choice("prediction target", target, TARGETS)
    t = torch.randint(0, schedule.T, (x0.shape[0],), device=x0.device, generator=generator)
    eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    a, sigma = signal_and_noise_scales(schedule, t, x0)
    y = regression_target(target, x0, eps, a, sigma)
    return (model(a * x0 + sigma * eps, t) - y).pow(2).flatten(1).mean(1)
