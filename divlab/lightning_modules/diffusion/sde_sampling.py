"""Samplers for score-based SDEs (Song et al. 2021b): predictor–corrector, the probability-flow ODE, and DDIM on
the SDE's marginals, as small frozen objects holding their options, called as sampler(model, sde, shape)."""
from dataclasses import dataclass

import torch

from divlab.lightning_modules.diffusion.ode import ODESolver
from divlab.lightning_modules.diffusion.parameterization import clip_x0, prediction_to_x0_eps
from divlab.lightning_modules.diffusion.score_matching import probability_flow_drift, score
from divlab.lightning_modules.diffusion.sde import MIN_TIME, expand_as_data, marginal_mean_std
from divlab.validation import check_choice, check_positive

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


TIME_GRIDS = ("uniform", "log_snr")


def sampling_grid(sde, steps: int, time_grid: str = "uniform", eps: float | None = None) -> list[tuple[float, float]]:
    """The (t, dt) of each reverse step, from t = 1 down.

    `uniform` (Song et al.'s samplers): t runs through `steps` evenly spaced times from 1 to ε (default the SDE's
    `sampling_eps`), each stepped by dt = (1 − ε)/steps, so the last step ends just below 0.
    `log_snr`: the steps run between `steps` + 1 times evenly spaced in λ_t = log(a_t²/σ_t²) from t = 1 to ε (default
    MIN_TIME, the smallest time training sees), each ending where the next begins. An Euler–Maruyama step
    contracts x − a_t x̂₀ by about g(t)² dt / σ_t², which for the VP SDE is the step's change in λ: the uniform grid
    makes it ≈ 1 or more over the last steps (β(t) dt against σ_t² ≈ β_min t), so data narrower than σ at the
    last steps come out too wide or too narrow depending on `steps`; the log-SNR grid keeps it at
    (λ_ε − λ_1)/steps everywhere. For the VE SDE λ_t is linear in t and the two grids differ only in where
    they end.
    """
    check_choice("model.time_grid", time_grid, TIME_GRIDS)
    if time_grid == "uniform":
        eps = sde.sampling_eps if eps is None else eps
        dt = (1 - eps) / steps
        return [(float(t), dt) for t in torch.linspace(1, eps, steps)]  # float32 times, as Song et al.'s code
    eps = MIN_TIME if eps is None else eps
    ends = torch.tensor([1.0, eps], dtype=torch.float64)
    times = sde.time_at_log_snr(torch.linspace(*sde.log_snr(ends).tolist(), steps + 1, dtype=torch.float64))
    times[0], times[-1] = 1.0, eps  # exact ends, whatever the round trip through λ rounds to
    return [(float(t), float(t - t_next)) for t, t_next in zip(times[:-1], times[1:])]


@dataclass(frozen=True)
class PredictorCorrector:
    """Predictor–corrector sampling: x_1 ~ prior; at each step of `sampling_grid(time_grid)`, `corrector_steps`
    Langevin steps at signal-to-noise ratio `snr`, then one Euler–Maruyama step. Returns the last
    predictor mean (no final noise)."""

    steps: int = 1000
    snr: float = 0.16
    corrector_steps: int = 1
    time_grid: str = "uniform"

    def __post_init__(self):
        check_positive("model.sample_steps", self.steps)
        check_positive("model.snr", self.snr, allow_zero=True)
        check_positive("model.corrector_steps", self.corrector_steps, allow_zero=True)
        check_choice("model.time_grid", self.time_grid, TIME_GRIDS)

    @torch.no_grad()
    def __call__(self, model, sde, shape, *, eps: float | None = None, generator: torch.Generator | None = None,
                 device=None) -> Tensor:
        x = sde.prior_sample(shape, generator, device)
        for time, dt in sampling_grid(sde, self.steps, self.time_grid, eps):
            t = torch.tensor(time, device=x.device).expand(shape[0])  # one time, stride 0: networks embed it once
            for _ in range(self.corrector_steps):
                x = langevin_step(model, sde, x, t, self.snr, dt, generator)
            x, mean = euler_maruyama_step(model, sde, x, t, dt, generator)
        return mean


def ddim_noise_std(sigma_s: Tensor, log_snr_t: Tensor, log_snr_s: Tensor, eta: float) -> Tensor:
    """σ_η of a DDIM step from t down to s on marginals x_t = a_t x_0 + σ_t ε, with λ = log(a²/σ²):
    η² σ_s² (1 − e^{λ_t − λ_s}) is η² times the variance of q(x_s | x_t, x_0), the posterior of the forward process
    (Song et al. 2021a eq. 16, written for any a_t, σ_t; for the VP SDE it is DDPM's `ddim_sigma` with ᾱ = a²)."""
    return eta * sigma_s * (-torch.expm1(log_snr_t - log_snr_s)).clamp(min=0).sqrt()


@dataclass(frozen=True)
class MarginalDDIM:
    """DDIM on the SDE's marginals x_t = a_t x_0 + σ_t ε (Song et al. 2021a, eq. 12; with η = 0 for the VP SDE the
    first-order DPM-Solver of Lu et al. 2022, for the VE SDE Euler's method in σ, Karras et al. 2022): from
    x_1 ~ prior, at each step of `sampling_grid(time_grid)` from t to s = t − dt, ε̂ = ε_θ(x, t),
    x̂_0 = (x − σ_t ε̂)/a_t and x ← a_s x̂_0 + √(σ_s² − σ_η²) ε̂ + σ_η z, σ_η = `ddim_noise_std(eta)`; the last step
    returns x̂_0 (DDPM's DDIM does the same). One network evaluation a step. η = 0 samples the probability-flow ODE
    (deterministic given x_1); η = 1 draws each step from the forward process's posterior at x̂_0, ancestral
    sampling of the reverse SDE on `steps` steps (DDPM's sampler when they are its T steps)."""

    steps: int = 50
    time_grid: str = "log_snr"
    eta: float = 0.0
    clip_denoised: bool = False  # x̂_0 clamped to [−1, 1] and ε̂ recomputed from it (`clip_x0`), as DDPM's option

    def __post_init__(self):
        check_positive("model.sample_steps", self.steps)
        check_choice("model.time_grid", self.time_grid, TIME_GRIDS)
        check_positive("model.eta", self.eta, allow_zero=True)

    @torch.no_grad()
    def __call__(self, model, sde, shape, *, eps: float | None = None, generator: torch.Generator | None = None,
                 device=None) -> Tensor:
        x = sde.prior_sample(shape, generator, device)

        def denoise(x: Tensor, time: float) -> tuple[Tensor, Tensor, Tensor]:
            t = torch.tensor(time, device=x.device).expand(shape[0])  # one time, stride 0: networks embed it once
            a, sigma = expand_as_data(sde.mean_coeff(t), x), expand_as_data(sde.std(t), x)
            x0, eps_hat = prediction_to_x0_eps("eps", model(x, t), x, a, sigma)
            return (*(clip_x0(x0, x, a, sigma) if self.clip_denoised else (x0, eps_hat)), t)

        *steps, (last, _) = sampling_grid(sde, self.steps, self.time_grid, eps)
        for time, dt in steps:
            x0, eps_hat, t = denoise(x, time)
            mean, std = marginal_mean_std(sde, x0, t - dt)
            if self.eta == 0:
                x = mean + std * eps_hat
                continue
            noise_std = ddim_noise_std(std, expand_as_data(sde.log_snr(t), x), expand_as_data(sde.log_snr(t - dt), x),
                                       self.eta)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + (std**2 - noise_std**2).clamp(min=0).sqrt() * eps_hat + noise_std * z
        return denoise(x, last)[0]


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
