"""Exact log-likelihood of a score model through its probability-flow ODE (Song et al. 2021b, App. D.2).

With dx/dt = f̃(x, t), the instantaneous change of variables (Chen et al. 2018) gives
log p_ε(x) = log p_1(x_1) + ∫_ε^1 ∇·f̃(x_t, t) dt, integrated jointly with x_t by torchdiffeq.
The divergence is exact (D backward passes; fine for low-dimensional data such as 2-D points) or
Hutchinson's unbiased estimate ∇·f̃ ≈ zᵀ (∂f̃/∂x) z with z fixed along the trajectory
(Rademacher or Gaussian), so the result is then an unbiased estimate of an exact quantity, in
nats per example, not a bound. p_1 is replaced by the SDE's prior.
"""
import math

import torch

from divlab.lightning_modules.diffusion.ode import ODESolver
from divlab.lightning_modules.diffusion.score_matching import probability_flow_drift
from divlab.validation import check_choice

Tensor = torch.Tensor


def _exact_divergence(f: Tensor, x: Tensor) -> Tensor:
    flat = f.flatten(1)
    div = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for i in range(flat.shape[1]):
        (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
        div = div + grad.flatten(1)[:, i]
    return div


def _hutchinson_divergence(f: Tensor, x: Tensor, z: Tensor) -> Tensor:
    (vjp,) = torch.autograd.grad((f * z).sum(), x)
    return (vjp * z).flatten(1).sum(1)


def _probe(kind: str, x: Tensor, generator) -> Tensor | None:
    if kind == "exact":
        return None
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return z.sign() if kind == "rademacher" else z


TRACE_ESTIMATORS = ("exact", "rademacher", "gaussian")


def ode_log_likelihood(
    model,
    sde,
    x: Tensor,
    trace: str = "rademacher",
    solver: ODESolver = ODESolver(),
    *,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """log p_ε(x) in nats per example [B], for x treated as a sample of the process at t = ε, with the
    ODE solved by `solver`."""
    check_choice("trace estimator", trace, TRACE_ESTIMATORS)
    z = _probe(trace, x, generator)

    def augmented_dynamics(time, state):
        x_t, _ = state
        with torch.enable_grad():
            x_t = x_t.detach().requires_grad_(True)
            f = probability_flow_drift(model, sde, x_t, time.expand(x_t.shape[0]))
            div = _exact_divergence(f, x_t) if z is None else _hutchinson_divergence(f, x_t, z)
        return f.detach(), div.detach()

    state = (x, torch.zeros(x.shape[0], device=x.device, dtype=x.dtype))
    x1, delta_logp = solver.solve(augmented_dynamics, state, eps, 1.0)
    return sde.prior_log_prob(x1) + delta_logp


def uniform_dequantize(x: Tensor, n_bins: int = 256, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """x̃ = x + u, u ~ U(−δ, δ), δ = 1/(n_bins − 1), for x on the 8-bit grid of [−1, 1] (the bins of
    `discretized_gaussian_log_likelihood`). Returns (x̃, D log 2δ): log P(x) ≥ E_u log p(x̃) + D log 2δ."""
    half_bin = 1.0 / (n_bins - 1)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    log_volume = x[0].numel() * math.log(2 * half_bin)
    return x + (2 * u - 1) * half_bin, torch.full((x.shape[0],), log_volume, device=x.device, dtype=x.dtype)
