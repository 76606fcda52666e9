"""The DDPM variational bound −log p_θ(x_0) ≤ L_T + Σ_{t=2}^T L_{t−1} + L_0 in nats per example
(Ho et al. 2020, eq. 5):

L_T = KL(q(x_T | x_0) ‖ N(0, I)),
L_{t−1} = E_q KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)),
L_0 = E_q −log p_θ(x_0 | x_1),

each expectation estimated with one x_t ~ q(x_t | x_0) per example and timestep. It is a bound,
not the likelihood. The decoder p_θ(x_0 | x_1) = N(μ_θ(x_1, 1), σ_1²) is discretised to the 8-bit
grid on [−1, 1] for images (`discretized`, Ho et al. eq. 13) or kept continuous for real-valued
data such as 2-D points (`gaussian`).
"""
from typing import NamedTuple

import torch

from divlab.lightning_modules.diffusion.ddpm import (
    DECODERS,
    ReverseProcess,
    p_mean_variance,
    q_mean_variance,
    q_posterior_mean_variance,
    q_sample,
)
from divlab.lightning_modules.diffusion.schedules import NoiseSchedule
from divlab.lightning_modules.likelihoods import normal_kl, sum_over_dims
from divlab.validation import check_positive

Tensor = torch.Tensor


class VariationalBound(NamedTuple):
    """`total` [B] = `prior` [B] + `per_step`.sum(1); `per_step` [B, T] holds L_0 (the decoder NLL) in
    column 0 and L_t in column t."""

    total: Tensor
    prior: Tensor
    per_step: Tensor


def prior_kl(schedule: NoiseSchedule, x0: Tensor) -> Tensor:
    """L_T = KL(q(x_T | x_0) ‖ N(0, I)), summed over dimensions."""
    t = torch.full((x0.shape[0],), schedule.T - 1, dtype=torch.long, device=x0.device)
    mean, variance = q_mean_variance(schedule, x0, t)
    return sum_over_dims(normal_kl(mean, variance.log(), torch.zeros_like(mean), torch.zeros_like(mean)))


def step_terms(
    model,
    schedule: NoiseSchedule,
    x0: Tensor,
    t: Tensor,
    reverse: ReverseProcess = ReverseProcess(),
    generator: torch.Generator | None = None,
) -> Tensor:
    """L_t for each example's own timestep t [B]: the decoder NLL where t = 0, else the KL term."""
    eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = q_sample(schedule, x0, t, eps)
    true_mean, _, true_log_variance = q_posterior_mean_variance(schedule, x0, x_t, t)
    mean, log_variance, _ = p_mean_variance(model, schedule, x_t, t, reverse)
    kl = sum_over_dims(normal_kl(true_mean, true_log_variance, mean, log_variance))
    decoder_nll = -sum_over_dims(DECODERS[reverse.decoder](x0, mean, 0.5 * log_variance))
    return torch.where(t == 0, decoder_nll, kl)


def step_terms_grid(
    model,
    schedule: NoiseSchedule,
    x0: Tensor,
    t: Tensor,
    reverse: ReverseProcess = ReverseProcess(),
    timesteps_per_call: int = 16,
    generator: torch.Generator | None = None,
) -> Tensor:
    """`step_terms` for timesteps t [K, B] (row k holds one timestep per example) → [K, B]; each model
    call evaluates `timesteps_per_call` rows for the whole batch at once."""
    check_positive("timesteps_per_call", timesteps_per_call)
    rows = []
    for chunk in t.split(timesteps_per_call):
        x0_rep = x0.repeat(len(chunk), *([1] * (x0.dim() - 1)))
        terms = step_terms(model, schedule, x0_rep, chunk.flatten(), reverse, generator)
        rows.append(terms.view(chunk.shape))
    return torch.cat(rows)


def variational_bound(
    model,
    schedule: NoiseSchedule,
    x0: Tensor,
    reverse: ReverseProcess = ReverseProcess(),
    timesteps_per_call: int = 16,
    generator: torch.Generator | None = None,
) -> VariationalBound:
    """The full bound, summed exactly over all T timesteps; each model call evaluates
    `timesteps_per_call` timesteps for the whole batch at once."""
    t = torch.arange(schedule.T, device=x0.device)[:, None].expand(schedule.T, x0.shape[0])
    per_step = step_terms_grid(model, schedule, x0, t, reverse, timesteps_per_call, generator).T
    prior = prior_kl(schedule, x0)
    return VariationalBound(total=prior + per_step.sum(1), prior=prior, per_step=per_step)


def sampled_variational_bound(
    model,
    schedule: NoiseSchedule,
    x0: Tensor,
    timesteps: int,
    reverse: ReverseProcess = ReverseProcess(),
    timesteps_per_call: int = 16,
    generator: torch.Generator | None = None,
) -> Tensor:
    """An unbiased estimate [B] of `variational_bound(...).total` from `timesteps` of its T − 1 KL terms:

    L_T + L_0 + Σ_k |S_k| L_{t_k},  t_k ~ U(S_k),

    where S_1..S_K split {1..T−1} into K = `timesteps` contiguous strata, one t_k per example and
    stratum (E |S_k| L_{t_k} = Σ_{t ∈ S_k} L_t). L_T and the decoder term L_0, which dominates on
    images, are always computed exactly, so only the small KL terms are sampled.
    """
    if not 1 <= timesteps <= schedule.T - 1:
        raise ValueError(f"timesteps must be in [1, T − 1 = {schedule.T - 1}], got {timesteps}")
    B = x0.shape[0]
    strata = torch.arange(1, schedule.T, device=x0.device).tensor_split(timesteps)
    draws = [s[torch.randint(len(s), (B,), device=x0.device, generator=generator)] for s in strata]
    t = torch.stack([torch.zeros_like(draws[0]), *draws])
    weights = torch.tensor([1.0] + [float(len(s)) for s in strata], device=x0.device, dtype=x0.dtype)
    terms = step_terms_grid(model, schedule, x0, t, reverse, timesteps_per_call, generator)
    return prior_kl(schedule, x0) + (weights[:, None] * terms).sum(0)
