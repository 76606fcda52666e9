"""Diffusion and score-SDE math against closed forms, using an oracle denoiser for Gaussian data.

For x_0 ~ N(m, Σ) and x_t = a_t x_0 + σ_t ε, p_t = N(a_t m, C_t) with C_t = a_t² Σ + σ_t² I, so every
conditional expectation a network would learn is linear in x_t and known exactly.
"""
import math

import numpy as np
import pytest
import torch

from divlab.lightning_modules.diffusion import (
    VESDE,
    VPSDE,
    AncestralSampler,
    DDIMSampler,
    ODESolver,
    PredictorCorrector,
    ProbabilityFlowSampler,
    ReverseProcess,
    diffusion_loss,
    dsm_loss,
    make_schedule,
    marginal_mean_std,
    ode_log_likelihood,
    prediction_to_x0_eps,
    q_posterior_mean_variance,
    q_sample,
    regression_target,
    uniform_dequantize,
    variational_bound,
)
from divlab.lightning_modules.diffusion.ddpm_sampling import ddim_sigma, ddim_timesteps
from divlab.lightning_modules.diffusion.sde_sampling import MarginalDDIM, ddim_noise_std, sampling_grid

pytestmark = pytest.mark.usefixtures("single_thread")

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
COV = torch.tensor([[0.25, 0.15], [0.15, 0.36]], dtype=torch.float64)
EYE = torch.eye(2, dtype=torch.float64)
# y = c_ε ε + c_0 x_0 for each target, c written out here rather than taken from the library.
TARGET_COEFFS = {"eps": lambda a, s: (1.0, 0.0), "x0": lambda a, s: (0.0, 1.0), "v": lambda a, s: (a, -s)}


def gaussian_data(n: int, seed: int = 0, mean: torch.Tensor = MEAN) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return mean + z @ torch.linalg.cholesky(COV).T


def marginal_cov(a: float, s: float) -> torch.Tensor:
    return a**2 * COV + s**2 * EYE


def target_given_xt(name: str, a: float, s: float):
    """(E[y | x_t] as a matrix K and offset b, y = K (x_t − a m) + b, and Cov(y | x_t)) for target y."""
    c_eps, c_x0 = TARGET_COEFFS[name](a, s)
    cross = c_eps * s * EYE + c_x0 * a * COV
    K = cross @ torch.linalg.inv(marginal_cov(a, s))
    cond_cov = c_eps**2 * EYE + c_x0**2 * COV - K @ cross.T
    return K, c_x0 * MEAN, cond_cov


def oracle(target: str, scales):
    """model(x_t, t) = E[y | x_t] for target y, scales(t) = (a_t, σ_t) per example."""

    def model(x, t):
        a, s = (v.to(torch.float64) for v in scales(t))
        out = torch.empty_like(x, dtype=torch.float64)
        for value in torch.unique(t):
            i = t == value
            K, b, _ = target_given_xt(target, a[i][0].item(), s[i][0].item())
            out[i] = (x[i].to(torch.float64) - a[i][0] * MEAN) @ K.T + b
        return out.to(x.dtype)

    return model


def eps_oracle_vectorised(scales, mean: torch.Tensor = MEAN, cov: torch.Tensor = COV):
    """E[ε | x_t] = σ_t C_t⁻¹ (x_t − a_t m), for many distinct t at once (samplers, ODEs, the VLB)."""
    lam, U = torch.linalg.eigh(cov)

    def model(x, t):
        a, s = (v.to(torch.float64).view(-1, 1) for v in scales(t))
        r = (x.to(torch.float64) - a * mean) @ U
        return (s * (r / (a**2 * lam + s**2)) @ U.T).to(x.dtype)

    return model


def ddpm_scales(schedule):
    return lambda t: (schedule.alphas_cumprod[t].sqrt(), (1 - schedule.alphas_cumprod[t]).sqrt())


def sde_scales(sde):
    return lambda t: (sde.mean_coeff(t), sde.std(t))


def assert_moments(x: torch.Tensor, mean_tol: float = 0.04, cov_rtol: float = 0.08):
    x = x.to(torch.float64)
    assert torch.isfinite(x).all()
    assert torch.allclose(x.mean(0), MEAN, atol=mean_tol), x.mean(0)
    cov = torch.cov(x.T)
    assert ((cov - COV).abs() <= cov_rtol * COV.diagonal().max()).all(), cov


# --- schedules ---------------------------------------------------------------------------------


def test_linear_schedule_is_ho_scaled_by_1000_over_T():
    assert torch.allclose(make_schedule("linear", 1000).betas[[0, -1]], torch.tensor([1e-4, 0.02], dtype=torch.float64))
    assert torch.allclose(make_schedule("linear", 250).betas[[0, -1]], torch.tensor([4e-4, 0.08], dtype=torch.float64))


def test_cosine_schedule_matches_its_defining_alpha_bar():
    T, s = 100, 0.008
    schedule = make_schedule("cosine", T)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    expected = torch.tensor([f(t) / f(0) for t in range(1, T)], dtype=torch.float64)
    assert torch.allclose(schedule.alphas_cumprod[:-1], expected, rtol=1e-10)
    assert schedule.betas.max() == pytest.approx(0.999)
    assert torch.allclose(schedule.alphas_cumprod, torch.cumprod(1 - schedule.betas, 0))


# --- forward process and posterior ---------------------------------------------------------------


def test_q_sample_matches_closed_form_moments():
    schedule = make_schedule("cosine", 200)
    alpha_bar = torch.cumprod(1 - schedule.betas, 0)
    x0 = torch.tensor([[0.7, -0.3]]).expand(50_000, 2)
    g = torch.Generator().manual_seed(0)
    for step in (0, 60, 199):
        t = torch.full((x0.shape[0],), step)
        x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g)).double()
        assert torch.allclose(x_t.mean(0), alpha_bar[step].sqrt() * x0[0].double(), atol=0.015)
        assert torch.allclose(x_t.var(0), (1 - alpha_bar[step]).expand(2), rtol=0.03, atol=1e-6)


def test_posterior_equals_gaussian_conditioning_of_the_joint():
    """With x_0 fixed, (x_{t−1}, x_t) is jointly Gaussian: Var x_{t−1} = 1 − ᾱ_{t−1},
    Cov(x_{t−1}, x_t) = √α_t (1 − ᾱ_{t−1}), Var x_t = 1 − ᾱ_t; condition x_{t−1} on x_t."""
    schedule = make_schedule("linear", 300)
    alpha = 1 - schedule.betas
    alpha_bar = torch.cumprod(alpha, 0)
    t = torch.arange(1, 300)
    x0 = torch.randn(299, 2, dtype=torch.float64)
    x_t = torch.randn(299, 2, dtype=torch.float64)
    var_prev, var_t = (1 - alpha_bar[t - 1])[:, None], (1 - alpha_bar[t])[:, None]
    cov = alpha[t].sqrt()[:, None] * var_prev
    expected_mean = alpha_bar[t - 1].sqrt()[:, None] * x0 + cov / var_t * (x_t - alpha_bar[t].sqrt()[:, None] * x0)
    expected_var = var_prev - cov**2 / var_t
    mean, var, log_var = q_posterior_mean_variance(schedule, x0, x_t, t)
    assert torch.allclose(mean, expected_mean, rtol=1e-8, atol=1e-10)
    assert torch.allclose(var, expected_var.expand_as(var), rtol=1e-8)
    assert torch.allclose(log_var, expected_var.log().expand_as(var), rtol=1e-8)
    first_mean, first_var, _ = q_posterior_mean_variance(schedule, x0, x_t, torch.zeros(299, dtype=torch.long))
    assert torch.allclose(first_mean, x0) and (first_var == 0).all()


# --- targets and losses --------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_prediction_round_trips_to_x0_and_eps(target):
    a = torch.rand(64, 1, dtype=torch.float64)
    s = (1 - a**2).sqrt()
    x0, eps = torch.randn(64, 3, dtype=torch.float64), torch.randn(64, 3, dtype=torch.float64)
    y = regression_target(target, x0, eps, a, s)
    c_eps, c_x0 = TARGET_COEFFS[target](a, s)
    assert torch.allclose(y, c_eps * eps + c_x0 * x0)
    x0_hat, eps_hat = prediction_to_x0_eps(target, y, a * x0 + s * eps, a, s)
    assert torch.allclose(x0_hat, x0) and torch.allclose(eps_hat, eps)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_oracle_ddpm_loss_equals_irreducible_variance(target):
    """E loss = (1/T) Σ_t tr Cov(y | x_t) / D for the oracle E[y | x_t]; any other model is higher."""
    schedule = make_schedule("linear", 40)
    scales = ddpm_scales(schedule)
    x0 = gaussian_data(40_000).float()
    loss = diffusion_loss(oracle(target, scales), schedule, x0, target, torch.Generator().manual_seed(1))
    expected = torch.stack(
        [target_given_xt(target, *(v.item() for v in scales(torch.tensor(t))))[2].trace() / 2 for t in range(40)]
    ).mean()
    assert torch.isfinite(loss).all() and loss.shape == (40_000,)
    assert loss.mean().item() == pytest.approx(expected.item(), rel=0.03)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_oracle_dsm_loss_equals_irreducible_variance(sde):
    eps = 1e-5
    x0 = gaussian_data(40_000).float()
    loss = dsm_loss(eps_oracle_vectorised(sde_scales(sde)), sde, x0, generator=torch.Generator().manual_seed(2))
    ts = torch.linspace(eps, 1, 2001, dtype=torch.float64)
    covs = [target_given_xt("eps", sde.mean_coeff(t).item(), sde.std(t).item())[2] for t in ts]
    traces = torch.stack([cov.trace() / 2 for cov in covs])
    assert loss.mean().item() == pytest.approx(torch.trapezoid(traces, ts).item() / (1 - eps), rel=0.03)


# --- SDE marginals --------------------------------------------------------------------------------


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_sde_marginals_solve_the_moment_odes(sde):
    """For dx = f dt + g dw with f linear, a_t and σ_t² obey da/dt = (∂f/∂x) a, dσ²/dt = 2 (∂f/∂x) σ² + g²."""
    t = torch.tensor([0.05, 0.3, 0.7, 0.95], dtype=torch.float64)
    h = 1e-6
    slope = sde.drift(torch.ones(4, 1, dtype=torch.float64), t).squeeze(1)
    da = (sde.mean_coeff(t + h) - sde.mean_coeff(t - h)) / (2 * h)
    dvar = (sde.std(t + h) ** 2 - sde.std(t - h) ** 2) / (2 * h)
    assert torch.allclose(da, slope * sde.mean_coeff(t), rtol=1e-5)
    assert torch.allclose(dvar, 2 * slope * sde.std(t) ** 2 + sde.diffusion(t) ** 2, rtol=1e-5)
    x = torch.randn(5, 2, dtype=torch.float64)
    scale = sde.std(torch.ones(1, dtype=torch.float64)).item() if isinstance(sde, VESDE) else 1.0
    prior = torch.distributions.Normal(0.0, scale).log_prob(x).sum(1)
    assert torch.allclose(sde.prior_log_prob(x), prior)
    mean, std = marginal_mean_std(sde, x, t[:1].expand(5))
    assert torch.allclose(mean, sde.mean_coeff(t[:1]) * x) and std.shape == (5, 1)


# --- samplers with the oracle --------------------------------------------------------------------


def test_ddim_with_eta_one_and_all_steps_is_ancestral_ddpm():
    schedule = make_schedule("linear", 100)
    model = eps_oracle_vectorised(ddpm_scales(schedule))
    ddpm = AncestralSampler()(model, schedule, (500, 2), generator=torch.Generator().manual_seed(3))
    ddim = DDIMSampler(steps=100, eta=1.0)(model, schedule, (500, 2), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ddpm, ddim, atol=1e-4)
    deterministic = DDIMSampler(steps=100, eta=0.0)(
        model, schedule, (500, 2), generator=torch.Generator().manual_seed(3)
    )
    assert not torch.allclose(ddim, deterministic, atol=1e-2)


@pytest.mark.parametrize(
    "sampler",
    [
        lambda m, s, g: AncestralSampler()(m, s, (4000, 2), generator=g),
        lambda m, s, g: DDIMSampler(steps=200, eta=0.0)(m, s, (4000, 2), generator=g),
        lambda m, s, g: DDIMSampler(steps=200, eta=1.0)(m, s, (4000, 2), generator=g),
    ],
    ids=["ddpm", "ddim_eta0", "ddim_eta1"],
)
def test_ddpm_samplers_reproduce_gaussian_data_with_oracle(sampler):
    schedule = make_schedule("linear", 1000)
    assert_moments(sampler(eps_oracle_vectorised(ddpm_scales(schedule)), schedule, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_sde_samplers_reproduce_gaussian_data_with_oracle(sde):
    model = eps_oracle_vectorised(sde_scales(sde))
    g = torch.Generator().manual_seed(5)
    assert_moments(PredictorCorrector(steps=300, snr=0.16)(model, sde, (4000, 2), generator=g))
    assert_moments(ProbabilityFlowSampler(ODESolver(tolerance=1e-4))(model, sde, (4000, 2), generator=g))
    assert_moments(MarginalDDIM(steps=200, time_grid="log_snr")(model, sde, (4000, 2), generator=g))
    assert_moments(MarginalDDIM(steps=200, time_grid="log_snr", eta=1.0)(model, sde, (4000, 2), generator=g))


def test_marginal_ddim_clips_each_x0_to_the_data_range_and_steps_with_the_eps_that_goes_with_it():
    """Data N(m, s² I) centred outside [−1, 1], exact ε̂: with clip_denoised each step's x̂_0 is the oracle's clamped
    to [−1, 1] and ε̂ = (x − a x̂_0)/σ; two steps of the VP log-SNR grid written out from x_1, the last returning
    the clamped x̂_0."""
    sde, m, s2 = VPSDE(), torch.tensor([1.6, -0.2], dtype=torch.float64), 0.3**2
    model = eps_oracle_vectorised(sde_scales(sde), m, s2 * EYE)
    x = MarginalDDIM(steps=2, time_grid="log_snr", clip_denoised=True)(model, sde, (500, 2),
                                                                       generator=torch.Generator().manual_seed(9))
    x1 = sde.prior_sample((500, 2), torch.Generator().manual_seed(9)).double()
    (t, _), (u, _) = sampling_grid(sde, 2, "log_snr")
    a_t, s_t, a_u, s_u = (f(torch.tensor(v, dtype=torch.float64)).item()
                          for v in (t, u) for f in (sde.mean_coeff, sde.std))

    def oracle_x0(x, a, s):  # E[x_0 | x_t] = m + (x − a m) a s²/v
        return m + (x - a * m) * a * s2 / (a**2 * s2 + s**2)

    x0_t = oracle_x0(x1, a_t, s_t).clamp(-1, 1)
    x_u = a_u * x0_t + s_u * (x1 - a_t * x0_t) / s_t
    want = oracle_x0(x_u, a_u, s_u).clamp(-1, 1)
    assert (want[:, 0] == 1).float().mean() > 0.5  # the clamp is doing something here
    torch.testing.assert_close(x.double(), want, rtol=1e-5, atol=1e-5)
    unclipped = MarginalDDIM(steps=2, time_grid="log_snr")(
        model, sde, (500, 2), generator=torch.Generator().manual_seed(9)
    )
    assert unclipped[:, 0].max() > 1.2


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_marginal_ddim_noise_is_the_forward_posteriors_std(eta):
    """σ_η² = η² Var q(x_s | x_t, x_0). For x_t = a_t x_0 + σ_t ε that posterior's variance is
    σ_{t|s}² σ_s² / σ_t² with σ_{t|s}² = σ_t² − (a_t/a_s)² σ_s², written out here; for the VP SDE it is also DDPM's
    DDIM σ with ᾱ = a² (Song et al. eq. 16, tested there against the ancestral sampler)."""
    t, s = torch.tensor([0.9, 0.4, 0.05], dtype=torch.float64), torch.tensor([0.6, 0.3, 0.01], dtype=torch.float64)
    for sde in (VPSDE(), VESDE()):
        a_t, a_s, sd_t, sd_s = sde.mean_coeff(t), sde.mean_coeff(s), sde.std(t), sde.std(s)
        posterior_var = (sd_t**2 - (a_t / a_s) ** 2 * sd_s**2) * sd_s**2 / sd_t**2
        got = ddim_noise_std(sd_s, sde.log_snr(t), sde.log_snr(s), eta)
        torch.testing.assert_close(got, eta * posterior_var.sqrt(), rtol=1e-9, atol=0)
    vp = VPSDE()
    torch.testing.assert_close(ddim_noise_std(vp.std(s), vp.log_snr(t), vp.log_snr(s), eta),
                               ddim_sigma(vp.mean_coeff(t) ** 2, vp.mean_coeff(s) ** 2, eta), rtol=1e-9, atol=0)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_marginal_ddim_with_eta_one_steps_from_the_posterior_given_the_oracles_x0(sde):
    """One DDIM step at η = 1 with the exact ε̂ of N(m, c² I) data, from x_t: x_s is Gaussian with mean
    a_s x̂_0 + √(σ_s² − σ_η²) ε̂ and std σ_η, x̂_0 and ε̂ the oracle's. Two steps (the second returns x̂_0), checked on
    many draws from one x_1: the first step's spread is σ_η times the contraction of the last step's x̂_0."""
    m, c2 = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.3**2
    model = eps_oracle_vectorised(sde_scales(sde), m, c2 * EYE)
    n = 20000
    x1 = sde.prior_sample((1, 2), torch.Generator().manual_seed(9)).double().expand(n, 2)
    (t, _), (u, _) = sampling_grid(sde, 2, "log_snr")
    a_t, s_t, a_u, s_u = (f(torch.tensor(v, dtype=torch.float64)).item()
                          for v in (t, u) for f in (sde.mean_coeff, sde.std))
    v_t, v_u = a_t**2 * c2 + s_t**2, a_u**2 * c2 + s_u**2
    eps_t = s_t * (x1[0] - a_t * m) / v_t
    x0_t = (x1[0] - s_t * eps_t) / a_t
    noise = math.sqrt((s_t**2 - (a_t / a_u) ** 2 * s_u**2) * s_u**2 / s_t**2)
    x_u_mean = a_u * x0_t + math.sqrt(s_u**2 - noise**2) * eps_t
    # the last step returns x̂_0(x_u) = m + (x_u − a_u m) a_u c² / v_u: mean and std follow from x_u's
    want_mean, want_std = m + (x_u_mean - a_u * m) * a_u * c2 / v_u, noise * a_u * c2 / v_u

    class FromX1:  # the prior's draw fixed, so the step's own noise is all the spread
        def prior_sample(self, shape, generator=None, device=None):
            return x1.float()

        def __getattr__(self, name):
            return getattr(sde, name)

    x = MarginalDDIM(steps=2, time_grid="log_snr", eta=1.0)(model, FromX1(), (n, 2),
                                                             generator=torch.Generator().manual_seed(3)).double()
    torch.testing.assert_close(x.mean(0), want_mean, rtol=0, atol=4 * want_std / math.sqrt(n))
    torch.testing.assert_close(x.std(0), torch.full((2,), want_std, dtype=torch.float64), rtol=0.03, atol=0)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_marginal_ddim_two_steps_by_hand_on_isotropic_gaussian_data(sde):
    """Data N(m, s² I) with its exact ε̂(x, t) = σ_t (x − a_t m)/v_t, v_t = a_t² s² + σ_t². A DDIM step from t to u
    maps x − a_t m to (x − a_t m)(a_u a_t s² + σ_u σ_t)/v_t (x̂_0 = m + (x − a_t m) a_t s²/v_t), and the last
    step returns x̂_0: two steps of the log-SNR grid, written out from x_1."""
    m, s2 = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.3**2
    model = eps_oracle_vectorised(sde_scales(sde), m, s2 * EYE)
    x = MarginalDDIM(steps=2, time_grid="log_snr")(model, sde, (5, 2), generator=torch.Generator().manual_seed(9))
    x1 = sde.prior_sample((5, 2), torch.Generator().manual_seed(9)).double()
    (t, _), (u, _) = sampling_grid(sde, 2, "log_snr")
    a_t, s_t, a_u, s_u = (f(torch.tensor(v, dtype=torch.float64)).item()
                          for v in (t, u) for f in (sde.mean_coeff, sde.std))
    v_t, v_u = a_t**2 * s2 + s_t**2, a_u**2 * s2 + s_u**2
    d_u = (x1 - a_t * m) * (a_u * a_t * s2 + s_u * s_t) / v_t
    torch.testing.assert_close(x.double(), m + d_u * a_u * s2 / v_u, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_log_snr_is_log_of_mean_coeff_over_std_squared_and_time_at_log_snr_inverts_it(sde):
    t = torch.tensor([1e-5, 1e-4, 1e-3, 0.01, 0.3, 0.7, 1.0], dtype=torch.float64)
    assert torch.allclose(sde.log_snr(t), 2 * (sde.mean_coeff(t) / sde.std(t)).log(), rtol=1e-9, atol=1e-9)
    assert torch.allclose(sde.time_at_log_snr(sde.log_snr(t)), t, rtol=1e-9, atol=0)


def test_log_snr_grid_reproduces_data_narrower_than_the_uniform_grids_last_noise_level():
    """Data N(m, 0.01² I), the width of a toy ring's modes, with the exact score. The uniform grid (Song et al.)
    ends at t = 10⁻³ where σ_t ≈ 0.0105, and its last steps contract x − a_t m by β(t) dt / σ_t² ≈ 1 or more:
    the samples' width depends on the number of steps, far from 0.01 either way. On the log-SNR grid every step
    contracts by the same small amount and the width converges to the data's (the grid ends at t = 10⁻⁵,
    σ_t ≈ 0.001, which adds 0.5 % to the variance)."""
    sde, mean, std = VPSDE(), torch.tensor([1.0, -0.5]), 0.01

    def width(steps: int, time_grid: str) -> float:
        sampler = PredictorCorrector(steps=steps, snr=0.16, time_grid=time_grid)
        model = eps_oracle_vectorised(sde_scales(sde), mean.double(), std**2 * EYE)
        x = sampler(model, sde, (4000, 2), generator=torch.Generator().manual_seed(6))
        assert torch.allclose(x.mean(0), mean, atol=1e-3)
        return x.double().std(0).mean().item()

    expected = math.sqrt(std**2 + sde.std(torch.tensor(1e-5)).item() ** 2)
    for steps in (50, 100, 200):
        assert width(steps, "log_snr") == pytest.approx(expected, rel=0.05), steps
    assert width(250, "uniform") > 3 * expected and width(500, "uniform") < 0.3 * expected


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_log_snr_grid_steps_evenly_in_log_snr_from_one_to_the_smallest_training_time(sde):
    grid = sampling_grid(sde, 40, "log_snr")
    times = torch.tensor([t for t, _ in grid] + [grid[-1][0] - grid[-1][1]], dtype=torch.float64)
    assert times[0] == 1.0 and times[-1] == pytest.approx(1e-5, rel=1e-9)
    steps = sde.log_snr(times).diff()
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-6)
    with pytest.raises(ValueError, match="model.time_grid 'cosine'; valid choices: log_snr, uniform"):
        PredictorCorrector(steps=10, time_grid="cosine")


# --- likelihoods ---------------------------------------------------------------------------------


def exact_log_density(sde, x: torch.Tensor, t: float, mean: torch.Tensor) -> torch.Tensor:
    tt = torch.tensor([t], dtype=torch.float64)
    a, s = sde.mean_coeff(tt).item(), sde.std(tt).item()
    return torch.distributions.MultivariateNormal(a * mean, marginal_cov(a, s)).log_prob(x)


# Centred data, so p_1 equals the SDE's prior to < 1e-3 nats and the ODE's answer is exact.
CENTRED = torch.zeros(2, dtype=torch.float64)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_probability_flow_likelihood_is_exact_for_gaussian(sde):
    x = gaussian_data(64, seed=6, mean=CENTRED)
    model = eps_oracle_vectorised(sde_scales(sde), mean=CENTRED)
    log_p = ode_log_likelihood(model, sde, x, trace="exact", solver=ODESolver(tolerance=1e-6))
    assert log_p.shape == (64,)
    assert torch.allclose(log_p, exact_log_density(sde, x, 1e-5, CENTRED), atol=2e-3)


@pytest.mark.parametrize("trace", ["rademacher", "gaussian"])
def test_hutchinson_likelihood_is_unbiased(trace):
    sde = VPSDE()
    x = gaussian_data(1, seed=7, mean=CENTRED).expand(400, 2)
    model = eps_oracle_vectorised(sde_scales(sde), mean=CENTRED)
    g = torch.Generator().manual_seed(8)
    log_p = ode_log_likelihood(model, sde, x, trace=trace, solver=ODESolver(tolerance=1e-4), generator=g)
    assert log_p.std() > 1e-3
    error = log_p.mean() - exact_log_density(sde, x[:1], 1e-5, CENTRED)
    assert error.abs() < 4 * log_p.std() / 20 + 2e-3


def kl_same_mean(cov: torch.Tensor, variance: float) -> float:
    """KL(N(μ, A) ‖ N(μ, v I)) = ½ (tr A / v − D − log det A + D log v)."""
    D = cov.shape[0]
    return 0.5 * (cov.trace() / variance - D - torch.logdet(cov) + D * math.log(variance)).item()


def expected_vlb_gap(schedule) -> float:
    """E[VLB − NLL] = KL(q(x_{0:T}) ‖ p_θ(x_{0:T}))
    = KL(q(x_T) ‖ N(0, I)) + Σ_t E KL(q(x_{t−1} | x_t) ‖ p_θ(x_{t−1} | x_t)).
    With the oracle mean only the covariances differ: q's is C_{t−1} − α_t C_{t−1} C_t⁻¹ C_{t−1}, p_θ's β̃_t I."""
    betas = schedule.betas
    alpha_bar = torch.cumprod(1 - betas, 0)
    C = [COV] + [marginal_cov(ab.sqrt().item(), (1 - ab).sqrt().item()) for ab in alpha_bar]
    beta_tilde = betas[1:] * (1 - alpha_bar[:-1]) / (1 - alpha_bar[1:])
    gap = 0.5 * (C[-1].trace() + alpha_bar[-1] * MEAN @ MEAN - 2 - torch.logdet(C[-1])).item()
    for t in range(schedule.T):
        reverse_cov = C[t] - (1 - betas[t]) * C[t] @ torch.linalg.inv(C[t + 1]) @ C[t]
        gap += kl_same_mean(reverse_cov, beta_tilde[max(t - 1, 0)].item())
    return gap


def test_vlb_upper_bounds_the_exact_nll_by_the_expected_gap():
    schedule = make_schedule("linear", 1000)
    x0 = gaussian_data(1000, seed=9)
    bound = variational_bound(eps_oracle_vectorised(ddpm_scales(schedule)), schedule, x0,
                              ReverseProcess(decoder="gaussian"),
                              timesteps_per_call=100, generator=torch.Generator().manual_seed(10))
    gap = bound.total - (-torch.distributions.MultivariateNormal(MEAN, COV).log_prob(x0))
    standard_error = gap.std() / math.sqrt(len(gap))
    assert torch.allclose(bound.total, bound.prior + bound.per_step.sum(1))
    assert bound.per_step.shape == (1000, 1000) and (bound.per_step[:, 1:] >= 0).all()
    assert gap.mean() > -3 * standard_error
    assert abs(gap.mean().item() - expected_vlb_gap(schedule)) < 4 * standard_error


@pytest.mark.parametrize("strata", [3, 4, 10])
def test_sampled_vlb_weights_each_stratum_by_its_size(monkeypatch, strata):
    # Exact small-T oracle: with deterministic terms L_t = t² the bound is L_T + Σ_{t=0}^{10} t² = L_T + 385;
    # strata of {1..10} have unequal sizes (4, 3, 3 for K = 3), so a mis-weighted stratum biases the mean
    # by tens of nats while the estimator's standard error here is under 0.5.
    import divlab.lightning_modules.diffusion.vlb as vlb

    monkeypatch.setattr(vlb, "step_terms_grid", lambda model, schedule, x0, t, *args: t.to(x0.dtype) ** 2)
    schedule = make_schedule("cosine", 11)
    x0 = torch.zeros(20_000, 2, dtype=torch.float64)
    sampled = vlb.sampled_variational_bound(None, schedule, x0, strata, generator=torch.Generator().manual_seed(0))
    exact = vlb.prior_kl(schedule, x0) + 385.0
    standard_error = sampled.std() / math.sqrt(len(sampled))
    assert standard_error < 0.5
    assert abs((sampled - exact).mean().item()) < 4 * standard_error
    if strata == 10:  # one timestep per stratum: no sampling left, the sum itself
        torch.testing.assert_close(sampled, exact)


def test_vlb_discretized_decoder_changes_only_the_decoder_term():
    schedule = make_schedule("cosine", 50)
    x0 = (gaussian_data(200, seed=11).clamp(-1, 1) * 127.5).round() / 127.5
    model = eps_oracle_vectorised(ddpm_scales(schedule))
    bounds = {d: variational_bound(model, schedule, x0, ReverseProcess(decoder=d),
                                   generator=torch.Generator().manual_seed(12))
              for d in ("gaussian", "discretized")}
    assert torch.allclose(bounds["gaussian"].per_step[:, 1:], bounds["discretized"].per_step[:, 1:])
    assert (bounds["discretized"].per_step[:, 0] >= 0).all()
    assert not torch.allclose(bounds["gaussian"].per_step[:, 0], bounds["discretized"].per_step[:, 0])


def test_uniform_dequantize_stays_in_bin():
    x = torch.randint(0, 256, (8, 1, 4, 4)) / 127.5 - 1
    x_tilde, log_volume = uniform_dequantize(x, generator=torch.Generator().manual_seed(13))
    assert ((x_tilde - x).abs() <= 1 / 255).all() and (x_tilde != x).any()
    assert torch.allclose(log_volume, torch.full((8,), 16 * math.log(2 / 255)))


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_image_shaped_batches_flow_through_every_function(target):
    schedule = make_schedule("cosine", 20)
    x0 = torch.randint(0, 256, (3, 1, 4, 4)) / 127.5 - 1

    def model(x, t):
        return 0.1 * x + 0.01 * t.float().view(-1, 1, 1, 1)

    g = torch.Generator().manual_seed(14)
    assert diffusion_loss(model, schedule, x0, target, g).shape == (3,)
    reverse = ReverseProcess(target, clip_denoised=True)
    for sample in (AncestralSampler(reverse)(model, schedule, (3, 1, 4, 4), generator=g),
                   DDIMSampler(steps=5, eta=0.5, reverse=reverse)(model, schedule, (3, 1, 4, 4), generator=g)):
        assert sample.shape == (3, 1, 4, 4) and sample.abs().max() <= 1
    bound = variational_bound(model, schedule, x0, reverse, timesteps_per_call=7, generator=g)
    assert bound.total.shape == (3,) and torch.isfinite(bound.total).all() and (bound.total > 0).all()
    sde = VPSDE()
    assert dsm_loss(model, sde, x0, generator=g).shape == (3,)
    assert PredictorCorrector(steps=5)(model, sde, (3, 1, 4, 4), generator=g).shape == (3, 1, 4, 4)
    assert torch.isfinite(ode_log_likelihood(model, sde, x0, solver=ODESolver(tolerance=1e-3), generator=g)).all()


# --- DDIM timesteps ------------------------------------------------------------------------------

# diffusers' DDIMScheduler(num_train_timesteps=1000, timestep_spacing="linspace").set_timesteps(n).timesteps
DIFFUSERS_LINSPACE_TIMESTEPS = {
    10: [999, 888, 777, 666, 555, 444, 333, 222, 111, 0],
    15: [999, 928, 856, 785, 714, 642, 571, 500, 428, 357, 285, 214, 143, 71, 0],
}


@pytest.mark.parametrize("steps", sorted(DIFFUSERS_LINSPACE_TIMESTEPS))
def test_ddim_timesteps_equal_the_reference_spacing_exactly(steps):
    assert ddim_timesteps(1000, steps) == DIFFUSERS_LINSPACE_TIMESTEPS[steps]


def test_ddim_timesteps_match_float64_linspace_for_every_step_count():
    for T in (50, 1000):
        for steps in range(2, T + 1):
            expected = np.linspace(0, T - 1, steps).round()[::-1].astype(int).tolist()
            assert ddim_timesteps(T, steps) == expected, (T, steps)
