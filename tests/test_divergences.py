"""Divergences against closed forms and quadrature on two 1-D Gaussians, plus penalties and DCGAN shapes.

P = N(μ₁, σ₁²) plays the data, Q = N(μ₂, σ₂²) the generator. σ₂ is chosen so every Monte Carlo
term below has finite variance (needs 3σ₁²/4 < σ₂² < 3σ₁²/2).
"""
import math
import pickle

import pytest
import torch
from torch import nn

from divlab.lightning_modules.divergences import (
    DIVERGENCES,
    F_DIVERGENCES,
    get_divergence,
    gradient_penalty,
    least_squares_with_labels,
    mmd2_from_kernels,
    mmd2_unbiased,
    mmd_with_bandwidths,
    r1_penalty,
)
from divlab.lightning_modules.networks.dcgan import DCGANCritic, DCGANGenerator

pytestmark = pytest.mark.usefixtures("single_thread")

MU_P, SIGMA_P = 0.0, 1.0
MU_Q, SIGMA_Q = 1.0, 1.1
N_MC = 200_000


def normal_log_prob(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def log_ratio(x):
    """log p(x)/q(x)."""
    return normal_log_prob(x, MU_P, SIGMA_P) - normal_log_prob(x, MU_Q, SIGMA_Q)


def quadrature(integrand_of_p_q):
    """∫ integrand(p(x), q(x)) dx by the trapezoid rule on a fine grid covering both densities."""
    x = torch.linspace(-20.0, 20.0, 400_001, dtype=torch.float64)
    p = normal_log_prob(x, MU_P, SIGMA_P).exp()
    q = normal_log_prob(x, MU_Q, SIGMA_Q).exp()
    return torch.trapezoid(integrand_of_p_q(p, q), x).item()


def two_jsd(p, q):
    m = 0.5 * (p + q)
    return torch.xlogy(p, p / m) + torch.xlogy(q, q / m)


def closed_forms():
    """D(P‖Q) for P = N(μ₁, σ₁²), Q = N(μ₂, σ₂²): analytic where it exists, else quadrature."""
    s1, s2, delta2 = SIGMA_P**2, SIGMA_Q**2, (MU_P - MU_Q) ** 2
    bhattacharyya = math.sqrt(2 * SIGMA_P * SIGMA_Q / (s1 + s2)) * math.exp(-delta2 / (4 * (s1 + s2)))
    return {
        "kl": math.log(SIGMA_Q / SIGMA_P) + (s1 + delta2) / (2 * s2) - 0.5,
        "reverse_kl": math.log(SIGMA_P / SIGMA_Q) + (s2 + delta2) / (2 * s1) - 0.5,
        "pearson": s2 / (SIGMA_P * math.sqrt(2 * s2 - s1)) * math.exp(delta2 / (2 * s2 - s1)) - 1.0,
        "squared_hellinger": 2.0 * (1.0 - bhattacharyya),
        "js": quadrature(two_jsd),
        "total_variation": quadrature(lambda p, q: 0.5 * (p - q).abs()),
    }


CLOSED_FORMS = closed_forms()

INTEGRANDS = {
    "kl": lambda p, q: torch.xlogy(p, p / q),
    "reverse_kl": lambda p, q: torch.xlogy(q, q / p),
    "pearson": lambda p, q: (p - q) ** 2 / q,
    "squared_hellinger": lambda p, q: (p.sqrt() - q.sqrt()) ** 2,
}

# Raw critic output V* with g_f(V*) = f'(p/q), as a function of log r = log p/q (tanh saturates for TV).
OPTIMAL_RAW_OUTPUT = {
    "kl": lambda log_r: 1.0 + log_r,
    "reverse_kl": lambda log_r: log_r,
    "js": lambda log_r: log_r,
    "pearson": lambda log_r: 2.0 * torch.expm1(log_r),
    "squared_hellinger": lambda log_r: 0.5 * log_r,
    "total_variation": lambda log_r: 30.0 * torch.sign(log_r),
}

# Optimal critic as a function of log r, and the divergence its estimate then equals:
# GAN D* = σ(log r) → 2·JSD; hinge sign(p − q) → TV; LSGAN (p − q)/(p + q) = tanh(½ log r) → ∫ (p − q)²/(p + q).
OPTIMAL_CRITICS_AND_TARGETS = {
    "minimax": (lambda log_r: log_r, CLOSED_FORMS["js"]),
    "non_saturating": (lambda log_r: log_r, CLOSED_FORMS["js"]),
    "hinge": (lambda log_r: torch.sign(log_r), CLOSED_FORMS["total_variation"]),
    "least_squares": (
        lambda log_r: torch.tanh(0.5 * log_r),
        quadrature(lambda p, q: (p - q) ** 2 / (p + q)),
    ),
}


@pytest.fixture(scope="module")
def samples():
    g = torch.Generator().manual_seed(0)
    x_p = MU_P + SIGMA_P * torch.randn(N_MC, generator=g, dtype=torch.float64)
    x_q = MU_Q + SIGMA_Q * torch.randn(N_MC, generator=g, dtype=torch.float64)
    return x_p, x_q


def standard_error(a, b):
    return math.sqrt(a.var().item() / a.numel() + b.var().item() / b.numel())


@pytest.mark.parametrize("name", sorted(INTEGRANDS))
def test_closed_forms_agree_with_quadrature(name):
    assert CLOSED_FORMS[name] == pytest.approx(quadrature(INTEGRANDS[name]), rel=1e-6)


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_generator_f_defines_the_named_divergence(name):
    f = F_DIVERGENCES[name].f
    assert quadrature(lambda p, q: q * f(p / q)) == pytest.approx(CLOSED_FORMS[name], rel=1e-6)


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_optimal_critic_attains_closed_form(name, samples):
    f_div = F_DIVERGENCES[name]
    t_real, t_fake = (f_div.f_prime(log_ratio(x).exp()) for x in samples)
    a, b = t_real, f_div.conjugate(t_fake)
    estimate = (a.mean() - b.mean()).item()
    se = standard_error(a, b)
    assert se < 0.02 * CLOSED_FORMS[name]
    assert estimate == pytest.approx(CLOSED_FORMS[name], abs=4 * se)


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_optimal_raw_output_attains_closed_form(name, samples):
    f_div, divergence = F_DIVERGENCES[name], get_divergence(name)
    v_real, v_fake = (OPTIMAL_RAW_OUTPUT[name](log_ratio(x)) for x in samples)
    estimate = divergence.estimate(v_real, v_fake).item()
    se = standard_error(f_div.activation(v_real), f_div.conjugate_of_activation(v_fake))
    assert estimate == pytest.approx(CLOSED_FORMS[name], abs=4 * se)
    assert divergence.critic_loss(v_real, v_fake).item() == pytest.approx(-estimate)


@pytest.mark.parametrize("name", sorted(OPTIMAL_CRITICS_AND_TARGETS))
def test_gan_hinge_and_least_squares_bounds_at_optimal_critic(name, samples):
    critic_of_log_r, reference = OPTIMAL_CRITICS_AND_TARGETS[name]
    x_p, x_q = samples
    estimate = get_divergence(name).estimate(critic_of_log_r(log_ratio(x_p)), critic_of_log_r(log_ratio(x_q)))
    assert estimate.item() == pytest.approx(reference, abs=0.01 * reference)


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_critic_of_a_wrong_ratio_gives_a_smaller_bound(name, samples):
    """T = f'(r·e^c), c ≠ 0, is feasible but not optimal, so its bound is strictly below D_f."""
    x_p, x_q = samples
    v_star = OPTIMAL_RAW_OUTPUT[name]
    estimate = get_divergence(name).estimate
    log_r_p, log_r_q = log_ratio(x_p), log_ratio(x_q)
    optimal = estimate(v_star(log_r_p), v_star(log_r_q)).item()
    for wrong_offset in (-0.5, 0.5):
        assert estimate(v_star(log_r_p + wrong_offset), v_star(log_r_q + wrong_offset)).item() < optimal - 1e-3


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_f_is_normalised_and_conjugate_of_activation_is_the_composition(name):
    f_div = F_DIVERGENCES[name]
    assert f_div.f(torch.tensor(1.0, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    v = torch.linspace(-4.0, 4.0, 81, dtype=torch.float64)
    torch.testing.assert_close(f_div.conjugate_of_activation(v), f_div.conjugate(f_div.activation(v)))


@pytest.mark.parametrize("name", ["kl", "js"])
def test_trained_mlp_critic_reaches_closed_form(name):
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    divergence = get_divergence(name)

    def draw(n):
        return MU_P + SIGMA_P * torch.randn(n, 1), MU_Q + SIGMA_Q * torch.randn(n, 1)

    for _ in range(300):
        x_p, x_q = draw(512)
        loss = divergence.critic_loss(critic(x_p).squeeze(-1), critic(x_q).squeeze(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        x_p, x_q = draw(100_000)
        estimate = divergence.estimate(critic(x_p).squeeze(-1), critic(x_q).squeeze(-1)).item()
    assert estimate == pytest.approx(CLOSED_FORMS[name], rel=0.10)


def expected_rbf_kernel(mu_a, sigma_a, mu_b, sigma_b, bandwidths):
    """E k(x, x') for x ~ N(μₐ, σₐ²I), x' ~ N(μ_b, σ_b²I) per dimension, k a sum of RBFs."""
    total = 0.0
    for h in bandwidths:
        s = h**2 + sigma_a**2 + sigma_b**2
        per_dim = [h / math.sqrt(s) * math.exp(-((ma - mb) ** 2) / (2 * s)) for ma, mb in zip(mu_a, mu_b)]
        total += math.prod(per_dim)
    return total


MMD_BANDWIDTHS = (0.5, 1.0, 2.0)


def mmd_repeats(mu_b, sigma_b, repeats=40, n=300):
    g = torch.Generator().manual_seed(1)
    mu_a, sigma_a = torch.tensor([0.0, 0.0]), 1.0
    values = [
        mmd2_unbiased(
            mu_a + sigma_a * torch.randn(n, 2, generator=g),
            torch.tensor(mu_b) + sigma_b * torch.randn(n + 50, 2, generator=g),
            MMD_BANDWIDTHS,
        ).item()
        for _ in range(repeats)
    ]
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean().item(), values.std().item() / math.sqrt(repeats)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmd_kernels_of_distant_samples_are_the_plain_exp_bit_for_bit(dtype):
    # The 5×5 grid's spread against a narrow kernel: most pairs' exp underflows, the case the floor is for.
    g = torch.Generator().manual_seed(2)
    x = (torch.randint(-2, 3, (200, 2), generator=g) * 2 + 0.05 * torch.randn(200, 2, generator=g)).to(dtype)
    y = (8 * torch.rand(150, 2, generator=g, dtype=dtype) - 4).requires_grad_()
    bandwidths = (0.05, 0.2, 1.0)

    def plain_exp_mmd2(x, y):  # mmd2_unbiased's kernel with torch.exp as it is
        z = torch.cat([x, y])
        sq = torch.cdist(z, z).pow(2)
        gamma = torch.tensor([1.0 / (2.0 * h**2) for h in bandwidths], dtype=dtype)
        k = torch.exp(-sq.unsqueeze(-1) * gamma).sum(-1)
        return mmd2_from_kernels(k[:200, :200], k[200:, 200:], k[:200, 200:])

    floored, reference = mmd2_unbiased(x, y, bandwidths), plain_exp_mmd2(x, y)
    underflow = -(torch.cdist(x, y.detach()).pow(2).max() / (2 * 0.05**2))
    assert underflow < math.log(torch.finfo(dtype).tiny)  # far below the floor: the floor is exercised
    assert torch.equal(floored, reference)
    assert torch.equal(torch.autograd.grad(floored, y)[0], torch.autograd.grad(reference, y)[0])


def test_mmd_unbiased_is_zero_for_one_distribution():
    mean, se = mmd_repeats([0.0, 0.0], 1.0)
    assert abs(mean) < 3 * se
    assert se < 1e-3


def test_mmd_unbiased_matches_gaussian_closed_form():
    mu_p, mu_q, s_p, s_q = [0.0, 0.0], [0.7, -0.3], 1.0, 1.3
    reference = (
        expected_rbf_kernel(mu_p, s_p, mu_p, s_p, MMD_BANDWIDTHS)
        + expected_rbf_kernel(mu_q, s_q, mu_q, s_q, MMD_BANDWIDTHS)
        - 2 * expected_rbf_kernel(mu_p, s_p, mu_q, s_q, MMD_BANDWIDTHS)
    )
    mean, se = mmd_repeats(mu_q, s_q)
    assert mean == pytest.approx(reference, abs=3 * se)
    assert reference > 20 * se


def unit_linear_critic(d, weight_norm):
    critic = nn.Sequential(nn.Flatten(), nn.Linear(d, 1))
    with torch.no_grad():
        w = torch.randn(1, d)
        critic[1].weight.copy_(weight_norm * w / w.norm())
    return critic


def test_gradient_penalty_vanishes_for_unit_norm_linear_critic():
    torch.manual_seed(0)
    real, fake = torch.randn(32, 1, 4, 4), torch.randn(32, 1, 4, 4)
    assert gradient_penalty(unit_linear_critic(16, 1.0), real, fake).item() < 1e-6


def test_gradient_penalty_is_positive_and_trains_the_critic():
    torch.manual_seed(0)
    real, fake = torch.randn(32, 1, 4, 4), torch.randn(32, 1, 4, 4)
    linear = unit_linear_critic(16, 3.0)
    assert gradient_penalty(linear, real, fake).item() == pytest.approx(4.0, rel=1e-5)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))
    penalty = gradient_penalty(lambda x: mlp(x).squeeze(-1), real, fake)
    assert penalty.item() > 0
    penalty.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mlp.parameters() if p.dim() > 1)


def test_gradient_penalty_samples_uniformly_between_real_and_fake():
    """D(x) = ½‖x‖² has ‖∇D(x̂)‖ = ‖x̂‖; with real = 0 and ‖fake‖ = c, E[(uc − 1)²] = c²/3 − c + 1."""
    torch.manual_seed(0)
    c = 4.0
    fake = torch.randn(20_000, 3)
    fake = c * fake / fake.norm(dim=1, keepdim=True)
    penalty = gradient_penalty(lambda x: 0.5 * x.pow(2).sum(dim=1), torch.zeros_like(fake), fake)
    assert penalty.item() == pytest.approx(c**2 / 3 - c + 1, rel=0.03)


def test_r1_penalty_is_squared_gradient_norm():
    real = torch.randn(32, 1, 4, 4)
    assert r1_penalty(unit_linear_critic(16, 3.0), real).item() == pytest.approx(9.0, rel=1e-5)


@pytest.mark.parametrize("name", sorted(n for n, d in DIVERGENCES.items() if d.needs_critic))
def test_generator_loss_falls_as_the_critic_scores_fakes_as_real(name):
    """Every critic scores real data high, so raising a (fake-looking) score must lower the generator loss."""
    out_real = torch.rand(64) + 0.5
    out_fake = (-0.5 - torch.rand(64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(get_divergence(name).generator_loss(out_real, out_fake), out_fake)
    assert (grad < 0).all()


@pytest.mark.parametrize("name", sorted(n for n, d in DIVERGENCES.items() if d.needs_critic))
def test_critic_loss_falls_as_real_scores_rise_and_fake_scores_fall(name):
    out_real = (torch.rand(64) - 0.5).requires_grad_(True)
    out_fake = (torch.rand(64) - 0.5).requires_grad_(True)
    loss = get_divergence(name).critic_loss(out_real, out_fake)
    real_grad, fake_grad = torch.autograd.grad(loss, (out_real, out_fake))
    assert (real_grad < 0).all() and (fake_grad > 0).all()


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


GAN_CRITIC_LOSS = -math.log(sigmoid(0.5)) - math.log(1.0 - sigmoid(-1.0))
HAND_COMPUTED_LOSSES = {
    "minimax": (GAN_CRITIC_LOSS, math.log(1.0 - sigmoid(-1.0)), math.log(4) - GAN_CRITIC_LOSS),
    "non_saturating": (GAN_CRITIC_LOSS, -math.log(sigmoid(-1.0)), math.log(4) - GAN_CRITIC_LOSS),
    "wasserstein": (-1.0 - 0.5, 1.0, 1.5),
    "hinge": (0.5 + 0.0, 1.0, 1.0 - 0.5 * 0.5),
    "least_squares": (0.5 * 0.5**2 + 0.0, 0.5, 2.0 - 2.0 * 0.125),
}


@pytest.mark.parametrize("name", sorted(HAND_COMPUTED_LOSSES))
def test_gan_losses_by_hand(name):
    """Critic scores 0.5 on a real and −1 on a fake example: (critic loss, generator loss, estimate)."""
    divergence = get_divergence(name)
    out_real, out_fake = torch.tensor([0.5]), torch.tensor([-1.0])
    values = [
        divergence.critic_loss(out_real, out_fake).item(),
        divergence.generator_loss(out_real, out_fake).item(),
        divergence.estimate(out_real, out_fake).item(),
    ]
    assert values == pytest.approx(HAND_COMPUTED_LOSSES[name], rel=1e-6)


def test_mmd_critic_maximises_what_the_generator_minimises():
    torch.manual_seed(0)
    x, y = torch.randn(50, 4), torch.randn(60, 4) + 0.5
    mmd = get_divergence("mmd")
    assert mmd.generator_loss(x, y).item() > 0
    assert mmd.critic_loss(x, y).item() == pytest.approx(-mmd.generator_loss(x, y).item())
    assert mmd.estimate(x, y).item() == pytest.approx(mmd.generator_loss(x, y).item())


def brute_force_gaussian_mmd2(x, y, bandwidths) -> float:
    """Gretton et al. 2012, eq. 3, term by term in Python floats: the reference for `mmd_with_bandwidths`."""
    def k(a, b):
        return sum(math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * h * h)) for h in bandwidths)
    x, y = x.tolist(), y.tolist()
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def test_mmd_with_bandwidths_is_the_unbiased_mmd2_of_those_kernels_and_pickles_with_them():
    torch.manual_seed(0)
    x, y = torch.randn(12, 2, dtype=torch.float64) * 0.3, torch.randn(9, 2, dtype=torch.float64) * 0.3 + 0.2
    bandwidths = (0.01, 0.1, 1.0)
    mmd = mmd_with_bandwidths(bandwidths)
    expected = brute_force_gaussian_mmd2(x, y, bandwidths)
    assert mmd.generator_loss(x, y).item() == pytest.approx(expected, rel=1e-10)
    assert mmd.critic_loss(x, y).item() == pytest.approx(-expected, rel=1e-10)
    assert mmd.generator_loss(x, y).item() != pytest.approx(get_divergence("mmd").generator_loss(x, y).item())
    restored = pickle.loads(pickle.dumps(mmd))  # ddp_spawn pickles the module: the bandwidths must travel
    assert restored.generator_loss(x, y).item() == pytest.approx(expected, rel=1e-10)
    assert restored.name == "mmd" and not restored.needs_critic


@pytest.mark.parametrize("bandwidths", [[], [0.1, 0.0], [-1.0], [float("nan")]])
def test_mmd_bandwidths_must_be_positive_and_are_named_when_not(bandwidths):
    with pytest.raises(ValueError, match=r"model\.mmd_bandwidths=.*positive"):
        mmd_with_bandwidths(bandwidths)


def test_unknown_divergence_names_the_value_and_the_choices():
    with pytest.raises(ValueError) as error:
        get_divergence("nope")
    message = str(error.value)
    assert "nope" in message
    assert ", ".join(sorted(DIVERGENCES)) in message


def test_registry_holds_every_family_and_pickles():
    assert sorted(DIVERGENCES) == [
        "hinge", "js", "kl", "least_squares", "minimax", "mmd", "non_saturating",
        "pearson", "reverse_kl", "squared_hellinger", "total_variation", "wasserstein",
    ]  # fmt: skip
    assert {name for name, divergence in DIVERGENCES.items() if not divergence.needs_critic} == {"mmd"}
    assert all(pickle.loads(pickle.dumps(divergence)) is divergence for divergence in DIVERGENCES.values())


@pytest.mark.parametrize("scale", [1.0, 20.0])
@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_losses_are_finite_and_differentiable(name, scale):
    torch.manual_seed(0)
    divergence = get_divergence(name)
    shape = (64,) if divergence.needs_critic else (64, 3)
    out_real = (scale * torch.randn(shape)).requires_grad_(True)
    out_fake = (scale * torch.randn(shape) + 0.5).requires_grad_(True)
    critic_loss = divergence.critic_loss(out_real, out_fake)
    generator_loss = divergence.generator_loss(out_real, out_fake)
    estimate = divergence.estimate(out_real, out_fake)
    for value in (critic_loss, generator_loss, estimate):
        assert value.dim() == 0 and torch.isfinite(value)
    real_grad, fake_grad = torch.autograd.grad(critic_loss, (out_real, out_fake))
    (generator_grad,) = torch.autograd.grad(generator_loss, out_fake)
    for grad in (real_grad, fake_grad, generator_grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("image_shape", [(3, 8, 8), (1, 28, 28), (3, 32, 32), (1, 12, 20)])
def test_dcgan_shapes_and_range(image_shape):
    torch.manual_seed(0)
    generator = DCGANGenerator(in_shape=(16,), out_shape=image_shape, width=8)
    critic = DCGANCritic(in_shape=image_shape, out_shape=(), width=8)
    images = generator(3.0 * torch.randn(5, 16))
    assert images.shape == (5, *image_shape)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert critic(images).shape == (5,)
    assert DCGANCritic(in_shape=image_shape, out_shape=(1,), width=8)(images).shape == (5, 1)
    assert DCGANCritic(in_shape=image_shape, out_shape=(), width=8, spectral_norm=True)(images).shape == (5,)


@pytest.mark.parametrize("image_shape", [(1, 30, 28), (1, 28, 30), (28, 28)])
def test_dcgan_rejects_shapes_not_divisible_by_four(image_shape):
    for build in (lambda: DCGANGenerator(in_shape=(16,), out_shape=image_shape),
                  lambda: DCGANCritic(in_shape=image_shape)):
        with pytest.raises(ValueError, match="divisible by 4") as error:
            build()
        assert str(image_shape) in str(error.value)


@pytest.mark.parametrize("name, push", [
    # ∂/∂x softplus(−w·x) = −σ(−w·x) w;  ∂/∂x −softplus(w·x) = −σ(w·x) w (the minimax loss saturates as D(x̃) → 0).
    ("non_saturating", lambda wx: torch.sigmoid(-wx)),
    ("minimax", lambda wx: torch.sigmoid(wx)),
])
def test_sample_gradient_norm_is_each_samples_own_push_through_a_linear_critic(name, push):
    from divlab.lightning_modules.divergences import sample_gradient_norm

    torch.manual_seed(0)
    w = torch.tensor([3.0, -4.0])  # ‖w‖ = 5
    fake = torch.randn(64, 2, requires_grad=True)
    objective = get_divergence(name)
    loss = objective.generator_loss(torch.zeros(64), fake @ w)
    expected = (push(fake.detach() @ w) * 5.0).mean()
    assert sample_gradient_norm(loss, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()  # the graph survives for the generator's own step
    assert fake.grad is not None


def test_least_squares_labels_by_hand_and_their_bound_at_the_optimal_critic():
    """LSGAN's 0-1 coding (a = 0, b = 1, c = 1) by hand on one real and one fake score, and at its optimal critic
    D* = p/(p + q) on P = (¾, ¼), Q = (¼, ¾) over two points (exact expectations by repeated draws), where the bound
    2 − 8L/(b − a)² equals ∫ (p − q)²/(p + q) = 0.25 + 0.25."""
    coded = least_squares_with_labels([0, 1, 1])
    out_real, out_fake = torch.tensor([0.5]), torch.tensor([-1.0])
    assert coded.critic_loss(out_real, out_fake).item() == pytest.approx(0.5 * 0.25 + 0.5 * 1.0)
    assert coded.generator_loss(out_real, out_fake).item() == pytest.approx(0.5 * 4.0)
    assert coded.estimate(out_real, out_fake).item() == pytest.approx(2.0 - 8.0 * 0.625)
    d_star = torch.tensor([0.75, 0.25], dtype=torch.float64)  # p/(p + q) at the two points
    d_real, d_fake = d_star[[0, 0, 0, 1]], d_star[[0, 1, 1, 1]]  # draws in proportion to P and to Q
    assert coded.estimate(d_real, d_fake).item() == pytest.approx(0.5, abs=1e-12)
    default = get_divergence("least_squares")  # a = −1, b = 1: D* = (p − q)/(p + q), the same bound
    assert default.estimate(2 * d_real - 1, 2 * d_fake - 1).item() == pytest.approx(0.5, abs=1e-12)
    assert pickle.loads(pickle.dumps(coded)).estimate(d_real, d_fake).item() == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("labels", [[0, 0, 1], [0, 1], [0, 1, float("nan")]])
def test_least_squares_labels_are_three_numbers_with_distinct_targets(labels):
    with pytest.raises(ValueError, match=r"model\.least_squares_labels=.* must be three finite numbers \[a, b, c\]"):
        least_squares_with_labels(labels)
