"""Samplers for score-based SDEs (Song et al. 2021b), predictor–corrector and the probability-flow ODE, as
small frozen objects holding their options, called as sampler(model, sde, shape)."""
from dataclasses import dataclass

import torch

from divlab.lightning_modules.diffusion.ode import ODESolver
from divlab.lightning_modules.diffusion.score_matching import probability_flow_drift, score
from divlab.lightning_modules.diffusion.sde import expand_as_data
from divlab.validation import check_positive

Tensor = torch.Tensor


def euler_maruyama_step(model, sde, x: Tensor, t: Tensor, dt: float, generator=None) -> tuple[Tensor, Tensor]:
    """Reverse-time SDE dx = [f − g² s_θ] dt + g dw̄ stepped from t to t − dt:
    x ← x − [f(x, t) − g(t)² s_θ(x, t)] dt + g(t) √dt z. Returns (x, its noise-free mean)."""
    g = expand_as_data(sde.diffusion(t), x)
    mean = x - (sde.drift(x, t) - g**2 * score(model, sde, x, t)) * dt
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return mean + g * dt**0.5 * z, mean


def langevin_step(model, sde, x: Tensor, t: Tensor, snr: float, dt: float, generator=None) -> Tensor:
    """x ← x + ε s_θ(x, t) + √(2ε) z with ε = 2 α (r ‖z‖ / ‖s_θ‖)², norms averaged over the batch
    (Song et al. Algs. 4–5; r the signal-to-noise ratio `snr`)."""
    grad = score(model, sde, x, t)
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    grad_norm = grad.flatten(1).norm(dim=1).mean()
    noise_norm = z.flatten(1).norm(dim=1).mean()
    step = expand_as_data(2 * sde.langevin_alpha(t, dt) * (snr * noise_norm / grad_norm) ** 2, x)
    return x + step * grad + (2 * step).sqrt() * z


@dataclass(frozen=True)
class PredictorCorrector:
    """Predictor–corrector sampling: x_1 ~ prior; at each of `steps` times from 1 to ε, `corrector_steps`
    Langevin steps at signal-to-noise ratio `snr`, then one Euler–Maruyama step. Returns the last
    predictor mean (no final noise)."""

    steps: int = 1000
    snr: float = 0.16
    corrector_steps: int = 1

    def __post_init__(self):
        check_positive("model.sample_steps", self.steps)
        check_positive("model.snr", self.snr, allow_zero=True)
        check_positive("model.corrector_steps", self.corrector_steps, allow_zero=True)

    @torch.no_grad()
    def __call__(self, model, sde, shape, *, eps: float | None = None, generator: torch.Generator | None = None,
                 device=None) -> Tensor:
        eps = sde.sampling_eps if eps is None else eps
        x = sde.prior_sample(shape, generator, device)
        dt = (1 - eps) / self.steps
        for time in torch.linspace(1, eps, self.steps, device=x.device):
            t = time.expand(shape[0])
            for _ in range(self.corrector_steps):
                x = langevin_step(model, sde, x, t, self.snr, dt, generator)
            x, mean = euler_maruyama_step(model, sde, x, t, dt, generator)
        return mean


@dataclass(frozen=True)
class ProbabilityFlowSampler:
    """Integrates the probability-flow ODE dx/dt = f̃(x, t) from x_1 ~ prior back to t = ε with `solver`."""

    solver: ODESolver = ODESolver()

    @torch.no_grad()
    def __call__(self, model, sde, shape, *, eps: float | None = None, generator: torch.Generator | None = None,
                 device=None) -> Tensor:
        eps = sde.sampling_eps if eps is None else eps
        x1 = sde.prior_sample(shape, generator, device)

        def drift(time, x):
            return probability_flow_drift(model, sde, x, time.expand(x.shape[0]))

        return self.solver.solve(drift, x1, 1.0, eps)
