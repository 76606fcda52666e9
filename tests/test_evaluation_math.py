"""Math tests for divlab.evaluation: every metric against a closed form or a brute-force reference."""
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.special
import scipy.stats
import torch
from torch import distributions as D
from torch import nn

from divlab.evaluation import (
    density_coverage,
    feature_fid_metric,
    feature_kid_metric,
    forward_kl,
    frechet_distance,
    frechet_distance_gaussians,
    gaussian_log_sums,
    jensen_shannon,
    kde_log_prob,
    kernel_inception_distance,
    kid_subset_size,
    loo_bandwidth,
    mmd2_unbiased,
    mode_scores,
    precision_recall,
    reverse_kl,
    scott_bandwidth,
    toy_divergences,
)
from divlab.evaluation.toy import split_off_nearest_

pytestmark = pytest.mark.usefixtures("single_thread")

LOG2 = math.log(2)
LOG8 = math.log(8)
RING_SIGMA = 0.01


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def correlated_features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = gen(seed)
    mixing = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mixing + shift


def ring_centres(k: int = 8, radius: float = 1.0) -> torch.Tensor:
    angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def isotropic_mixture(centres: torch.Tensor, sigma: float) -> D.Distribution:
    weights = torch.ones(centres.shape[0], dtype=torch.float64)
    components = D.Independent(D.Normal(centres, sigma * torch.ones_like(centres)), 1)
    return D.MixtureSameFamily(D.Categorical(weights), components)


# Fréchet distance


def scipy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_frechet_matches_scipy_sqrtm_reference(shift):
    x = correlated_features(600, 24, seed=0)
    y = correlated_features(500, 24, seed=1, shift=shift)
    reference = scipy_frechet(x.numpy(), y.numpy())
    assert frechet_distance(x, y).item() == pytest.approx(reference, rel=1e-3)


def test_frechet_closed_form_for_diagonal_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]).double(), torch.tensor([0.5, 1.0, 0.0]).double()
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]).double(), torch.tensor([2.0, 1.0, 0.25]).double()
    expected = ((mu1 - mu2) ** 2).sum() + ((var1.sqrt() - var2.sqrt()) ** 2).sum()
    got = frechet_distance_gaussians(mu1, torch.diag(var1), mu2, torch.diag(var2))
    assert got.item() == pytest.approx(expected.item(), rel=1e-9)


def test_frechet_from_samples_approaches_closed_form():
    g = gen(2)
    x = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    y = torch.randn(20000, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0]) + torch.tensor([1.0, 0.0])
    assert frechet_distance(x, y).item() == pytest.approx(1.0 + (2.0 - 1.0) ** 2, abs=0.1)


@pytest.mark.parametrize("n, d", [(400, 16), (30, 64), (100, 512)])
def test_frechet_is_zero_for_identical_sets_even_when_covariance_is_singular(n, d):
    x = correlated_features(n, d, seed=3)
    trace = x.var(dim=0).sum().item()
    assert abs(frechet_distance(x, x).item()) < 1e-12 * trace


class TinyFeatureNet(nn.Module):
    def __init__(self, num_features: int = 12):
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, num_features),
            nn.BatchNorm1d(num_features), nn.Dropout(0.5),
        )

    def forward(self, x):
        return self.body(x)


def images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return (torch.rand(n, 1, 8, 8, generator=gen(seed)) * 2 - 1 + shift).clamp(-1, 1)


def test_torchmetrics_fid_with_custom_feature_net_matches_frechet_distance():
    torch.manual_seed(0)
    net = TinyFeatureNet()
    with torch.no_grad():
        net.body[4].running_var.fill_(2.0)
    real, fake = images(300, seed=4), images(300, seed=5, shift=0.2)
    metric = feature_fid_metric(net)
    metric.train()
    for batch in real.split(100):
        metric.update(batch, real=True)
    for batch in fake.split(100):
        metric.update(batch, real=False)
    with torch.no_grad():
        net.eval()
        expected = frechet_distance(net(real), net(fake))
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-3)
    assert expected.item() > 0.01


def test_fid_metric_infers_num_features_from_sample_input():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 7))
    metric = feature_fid_metric(net, sample_input=images(2, seed=6))
    assert metric.inception.num_features == 7
    with pytest.raises(ValueError):
        feature_fid_metric(net)


# KID


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_brute_force_unbiased_cubic_kernel():
    x = correlated_features(30, 5, seed=7)
    y = correlated_features(25, 5, seed=8, shift=0.4)
    assert mmd2_unbiased(x, y).item() == pytest.approx(brute_force_mmd2(x.numpy(), y.numpy()), rel=1e-10)


def test_kid_mean_over_subsets_converges_to_the_full_set_brute_force_mmd2():
    # A U-statistic averaged over random sub-samples is the full-sample U-statistic in expectation.
    x = correlated_features(40, 6, seed=9)
    y = correlated_features(40, 6, seed=10, shift=0.2)
    subsets = 4000
    mean, std = kernel_inception_distance(x, y, subsets=subsets, subset_size=None, generator=gen(0))
    full = brute_force_mmd2(x.numpy(), y.numpy())
    assert abs(mean.item() - full) < 4 * std.item() / math.sqrt(subsets)
    assert std.item() > 0.05 * abs(full)


def test_kid_subsets_take_at_most_half_the_smaller_set():
    assert kid_subset_size(1000, 1000) == 500
    assert kid_subset_size(1000, 300, requested=1000) == 150
    assert kid_subset_size(1000, 1000, requested=100) == 100
    with pytest.raises(ValueError, match="at least 4"):
        kid_subset_size(3, 100)


def test_kid_std_is_a_real_spread_that_shrinks_with_more_samples():
    # With 1,000 rows and subsets of 1,000 every subset was the whole set: std ≈ 1e-7 round-off.
    def kid(n):
        x = torch.randn(n, 16, generator=gen(21))
        y = torch.randn(n, 16, generator=gen(22)) + 0.3
        return kernel_inception_distance(x, y, subsets=50, generator=gen(0))

    mean_small, std_small = kid(200)
    mean_large, std_large = kid(1000)
    assert std_large.item() > 1e-3 * mean_large.item()
    assert std_large.item() < 0.7 * std_small.item()


def test_kid_is_near_zero_for_one_distribution_and_positive_when_shifted():
    x = torch.randn(1000, 16, generator=gen(11))
    y = torch.randn(1000, 16, generator=gen(12))
    same, same_std = kernel_inception_distance(x, y, subsets=20, subset_size=200, generator=gen(0))
    shifted, _ = kernel_inception_distance(x, y + 0.25, subsets=20, subset_size=200, generator=gen(0))
    assert abs(same.item()) < 0.02
    assert same_std.item() > 0
    assert shifted.item() > 0.1


def test_torchmetrics_kid_with_custom_feature_net_matches_ours():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    real, fake = images(50, seed=13), images(50, seed=14, shift=0.3)
    metric = feature_kid_metric(net, num_features=10, subsets=2, subset_size=50)  # the whole set, twice
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.no_grad():
        expected = brute_force_mmd2(net(real).double().numpy(), net(fake).double().numpy())
    assert metric.compute()[0].item() == pytest.approx(expected, rel=1e-3)


# Precision / recall, density / coverage


def brute_force_manifold(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    def dist(a, b):
        return math.sqrt(sum((ai - bi) ** 2 for ai, bi in zip(a, b)))

    def kth_radius(points, i, k):
        return sorted(dist(points[i], points[j]) for j in range(len(points)) if j != i)[k - 1]

    n, m = len(real), len(fake)
    r_real = [kth_radius(real, i, k_pr) for i in range(n)]
    r_fake = [kth_radius(fake, j, k_pr) for j in range(m)]
    r_real_dc = [kth_radius(real, i, k_dc) for i in range(n)]
    precision = sum(any(dist(fake[j], real[i]) <= r_real[i] for i in range(n)) for j in range(m)) / m
    recall = sum(any(dist(real[i], fake[j]) <= r_fake[j] for j in range(m)) for i in range(n)) / n
    density = sum(dist(fake[j], real[i]) <= r_real_dc[i] for i in range(n) for j in range(m)) / (k_dc * m)
    coverage = sum(any(dist(real[i], fake[j]) <= r_real_dc[i] for j in range(m)) for i in range(n)) / n
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("chunk_size", [7, 1024])
def test_manifold_metrics_match_brute_force_double_loop(chunk_size):
    real = correlated_features(45, 3, seed=15)
    fake = correlated_features(38, 3, seed=16, shift=0.5) * 1.3
    expected = brute_force_manifold(real.tolist(), fake.tolist(), k_pr=3, k_dc=5)
    precision, recall = precision_recall(real, fake, k=3, chunk_size=chunk_size)
    density, coverage = density_coverage(real, fake, k=5, chunk_size=chunk_size)
    got = {"precision": precision, "recall": recall, "density": density, "coverage": coverage}
    assert {name: value.item() for name, value in got.items()} == pytest.approx(expected, abs=1e-12)
    assert 0 < expected["precision"] < 1 and 0 < expected["coverage"] < 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_manifold_metrics_for_identical_sets(dtype):
    # Each real ball holds its centre and its k nearest neighbours: density is exactly (k + 1)/k, also
    # in float32 and across chunks (the boundary point must get the same distance in radius and count).
    x = torch.randn(300, 64, generator=gen(17), dtype=torch.float64).to(dtype)
    same = x.flip(0)  # the same points in another order, so other blocks compute their distances
    precision, recall = precision_recall(x, same, k=3, chunk_size=128)
    density, coverage = density_coverage(x, same, k=5, chunk_size=128)
    assert (precision.item(), recall.item(), coverage.item()) == (1.0, 1.0, 1.0)
    assert density.item() == 6 / 5


def test_manifold_metrics_are_near_one_for_two_samples_of_one_distribution():
    real = torch.randn(1500, 2, generator=gen(18), dtype=torch.float64)
    fake = torch.randn(1500, 2, generator=gen(19), dtype=torch.float64)
    precision, recall = precision_recall(real, fake)
    density, coverage = density_coverage(real, fake)
    assert precision.item() > 0.95 and recall.item() > 0.95 and coverage.item() > 0.93
    assert density.item() == pytest.approx(1.0, abs=0.08)


def test_manifold_metrics_are_zero_for_disjoint_distributions():
    real = torch.randn(500, 8, generator=gen(20))
    fake = torch.randn(500, 8, generator=gen(21)) + 50.0
    values = (*precision_recall(real, fake), *density_coverage(real, fake))
    assert [v.item() for v in values] == [0.0, 0.0, 0.0, 0.0]


# Toy protocol


def test_true_ring8_samples_cover_all_modes_with_high_quality():
    centres = ring_centres()
    torch.manual_seed(30)
    samples = isotropic_mixture(centres, RING_SIGMA).sample((2500,))
    scores = mode_scores(samples, centres, RING_SIGMA)
    in_3_sigma_2d = 100 * (1 - math.exp(-4.5))
    assert scores.modes_covered == 8
    assert scores.high_quality_percent > 97
    assert scores.high_quality_percent == pytest.approx(in_3_sigma_2d, abs=0.7)
    assert 0 <= scores.reverse_kl < 0.01


def test_samples_from_one_mode_cover_one_mode_with_reverse_kl_log_k():
    centres = ring_centres()
    torch.manual_seed(31)
    samples = isotropic_mixture(centres[2:3], RING_SIGMA).sample((2500,))
    scores = mode_scores(samples, centres, RING_SIGMA)
    assert scores.modes_covered == 1
    assert scores.counts.argmax().item() == 2
    assert scores.reverse_kl == pytest.approx(LOG8, abs=1e-12)


def test_mode_scores_threshold_and_min_count_by_hand():
    centres = ring_centres()
    s = RING_SIGMA
    samples = torch.tensor([
        [1.0 + 2.9 * s, 0.0], [1.0, 2.0 * s], [1.0, -1.0 * s],
        [0.0, 1.0 + 1.0 * s],
        [-1.0 - 3.1 * s, 0.0],
        [0.0, 0.0],
    ], dtype=torch.float64)
    assert mode_scores(samples, centres, s).modes_covered == 2
    assert mode_scores(samples, centres, s, min_count=2).modes_covered == 1
    assert mode_scores(samples, centres, s, threshold=3.2).modes_covered == 3
    assert mode_scores(samples, centres, s).high_quality_percent == pytest.approx(100 * 4 / 6)
    assert mode_scores(samples, centres, s).reverse_kl == pytest.approx(0.75 * math.log(8 * 0.75) + 0.25 * math.log(2))


# Kernel density estimate


def test_scott_bandwidth_formula():
    x = torch.randn(500, 3, generator=gen(22), dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    expected = 500 ** (-1 / 7) * x.numpy().std(axis=0, ddof=1)
    np.testing.assert_allclose(scott_bandwidth(x).numpy(), expected, rtol=1e-12)


def test_kde_log_prob_matches_scipy_product_kernel():
    samples = torch.randn(60, 2, generator=gen(23), dtype=torch.float64)
    points = torch.randn(15, 2, generator=gen(24), dtype=torch.float64)
    h = np.array([0.3, 0.5])
    s, p = samples.numpy(), points.numpy()
    kernels = scipy.stats.norm.pdf(p[:, None, :], loc=s[None, :, :], scale=h).prod(axis=2)
    np.testing.assert_allclose(
        kde_log_prob(points, samples, torch.tensor(h)).numpy(), np.log(kernels.mean(axis=1)), rtol=1e-10
    )
    self_kernels = scipy.stats.norm.pdf(s[:, None, :], loc=s[None, :, :], scale=h).prod(axis=2)
    np.fill_diagonal(self_kernels, 0.0)
    loo = np.log(self_kernels.sum(axis=1) / (len(s) - 1))
    np.testing.assert_allclose(
        kde_log_prob(samples, samples, torch.tensor(h), leave_one_out=True, chunk_size=16).numpy(), loo, rtol=1e-10
    )


@pytest.mark.parametrize("precision", [0.5, 3.7, 1e4])
def test_gaussian_log_sums_are_torch_logsumexp(precision):
    # Squared distances whose scaled terms span a few to a billion nats (a narrow kernel's far pairs underflow
    # exp) and a row with +inf (a left-out sample): the log-sum-exp about each row's nearest neighbour, with the
    # floor 700 nats below it, must agree with torch.logsumexp to float64 rounding.
    sq = torch.rand(5, 3000, generator=gen(25), dtype=torch.float64) * torch.tensor(
        [[1.0], [300.0], [1e3], [1e5], [1e8]], dtype=torch.float64) + 0.01
    sq[1, ::7] = math.inf
    sq[2, 5] = 0.0
    expected = torch.logsumexp(-precision * sq, dim=1)
    assert (-precision * sq).min() < -708  # exp underflows here: the case the floor is for
    torch.testing.assert_close(
        gaussian_log_sums(*split_off_nearest_(sq.clone()), precision), expected, rtol=1e-13, atol=0
    )
    if precision == 0.5:  # the KDE's kernel: exactly torch's value
        assert torch.equal(gaussian_log_sums(*split_off_nearest_(sq.clone()), precision), expected)


def test_kde_scores_of_narrow_modes_are_torch_logsumexp_bit_for_bit():
    # The ring at σ = 0.01 with the leave-one-out bandwidth: the case whose far pairs underflow.
    torch.manual_seed(26)
    samples = isotropic_mixture(ring_centres(), RING_SIGMA).sample((700,))
    points = isotropic_mixture(ring_centres(), RING_SIGMA).sample((300,))
    h = loo_bandwidth(samples)
    scaled = lambda a: a / h  # noqa: E731
    sq = torch.cdist(scaled(points), scaled(samples)).square()
    reference = torch.logsumexp(-0.5 * sq, dim=1) - math.log(700) - h.log().sum() - math.log(2 * math.pi)
    assert (-0.5 * sq).min() < -708  # exp underflows here: the case the floor is for
    assert torch.equal(kde_log_prob(points, samples, h), reference)


@pytest.mark.parametrize("bandwidth", [None, 0.05])
def test_kde_density_integrates_to_one_on_a_grid(bandwidth):
    torch.manual_seed(32)
    samples = isotropic_mixture(ring_centres(), 0.1).sample((300,))
    step = 0.02
    axis = torch.arange(-2.0, 2.0, step, dtype=torch.float64) + step / 2
    grid = torch.cartesian_prod(axis, axis)
    mass = kde_log_prob(grid, samples, bandwidth).exp().sum() * step**2
    assert mass.item() == pytest.approx(1.0, abs=5e-3)


def test_loo_bandwidth_adapts_to_narrow_modes():
    torch.manual_seed(33)
    samples = isotropic_mixture(ring_centres(), RING_SIGMA).sample((1000,))
    h = loo_bandwidth(samples)
    assert (h < 2 * RING_SIGMA).all() and (h > 0.1 * RING_SIGMA).all()
    assert (scott_bandwidth(samples) > 10 * RING_SIGMA).all()


@pytest.mark.parametrize("spread", [RING_SIGMA, 0.05, 0.3])
def test_loo_bandwidth_is_the_brute_force_leave_one_out_maximum(spread):
    # The leave-one-out log-likelihood of every scale by scipy's Gaussian log-density, pair by pair, over the
    # same strided rows: the chosen bandwidth must be its argmax.
    torch.manual_seed(34)
    samples = isotropic_mixture(ring_centres(), spread).sample((600,)).double()
    scales = torch.logspace(-3, math.log10(3.0), 20, dtype=torch.float64)
    base = scott_bandwidth(samples)
    rows = np.arange(0, 600, 3)  # max_rows=200: every 3rd sample
    s = samples.numpy()
    objective = []
    for c in scales.tolist():
        h = (c * base).numpy()
        log_kernels = scipy.stats.norm.logpdf(s[rows, None, :], loc=s[None, :, :], scale=h).sum(-1)
        log_kernels[np.arange(len(rows)), rows] = -np.inf
        objective.append((scipy.special.logsumexp(log_kernels, axis=1) - np.log(599)).sum())
    expected = scales[int(np.argmax(objective))] * base
    assert torch.equal(loo_bandwidth(samples, max_rows=200, chunk_size=64), expected)


# KL and Jensen–Shannon


def test_kl_argument_order_follows_the_definitions():
    log_p, log_q = torch.tensor([-1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert forward_kl(log_p, log_q).item() == pytest.approx(-1.5)
    assert reverse_kl(log_p, log_q).item() == pytest.approx(1.5)
    assert reverse_kl(log_q, log_p).item() == pytest.approx(-1.5)


def test_kl_and_js_closed_forms_for_shifted_gaussians():
    p = D.MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    q = D.MultivariateNormal(torch.tensor([1.0, 0.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    torch.manual_seed(25)
    xp, xq = p.sample((20000,)), q.sample((20000,))
    assert forward_kl(p.log_prob(xp), q.log_prob(xp)).item() == pytest.approx(0.5, abs=0.03)
    assert reverse_kl(p.log_prob(xq), q.log_prob(xq)).item() == pytest.approx(0.5, abs=0.03)

    def integrand(t):
        a, b = scipy.stats.norm.pdf(t), scipy.stats.norm.pdf(t, loc=1.0)
        m = (a + b) / 2
        return 0.5 * a * math.log(a / m) + 0.5 * b * math.log(b / m)

    js_reference, _ = scipy.integrate.quad(integrand, -12, 13)
    js = jensen_shannon(p.log_prob(xp), q.log_prob(xp), p.log_prob(xq), q.log_prob(xq))
    assert js.item() == pytest.approx(js_reference, abs=0.01)


def test_js_is_log2_for_disjoint_and_never_above_log2():
    p = D.MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    q = D.MultivariateNormal(torch.full((2,), 100.0, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    torch.manual_seed(34)
    xp, xq = p.sample((500,)), q.sample((500,))
    exact = toy_divergences(xp, xq, p.log_prob, q.log_prob)
    kde = toy_divergences(xp, xq, p.log_prob, bandwidth=None)
    assert exact["js"].item() == pytest.approx(LOG2, abs=1e-9)
    assert kde["js"].item() == pytest.approx(LOG2, abs=1e-6)
    for seed in range(5):
        log_values = 30 * torch.randn(4, 50, generator=gen(seed), dtype=torch.float64)
        assert jensen_shannon(*log_values).item() <= LOG2 + 1e-12


def test_divergences_vanish_when_model_is_data():
    centres = ring_centres()
    p = isotropic_mixture(centres, RING_SIGMA)
    q = isotropic_mixture(centres.flip(0), RING_SIGMA)
    torch.manual_seed(27)
    data, model = p.sample((1000,)), q.sample((1000,))
    exact = toy_divergences(data, model, p.log_prob, q.log_prob)
    kde = toy_divergences(data, model, p.log_prob)
    for name in ("forward_kl", "reverse_kl", "js"):
        assert exact[name].item() == pytest.approx(0.0, abs=1e-9)
        assert kde[name].item() == pytest.approx(0.0, abs=0.15), name
    assert abs(kde["js"].item()) < 0.03


def test_collapsed_model_has_reverse_kl_log8_and_large_forward_kl():
    centres = ring_centres()
    p = isotropic_mixture(centres, RING_SIGMA)
    q = isotropic_mixture(centres[:1], RING_SIGMA)
    torch.manual_seed(28)
    data, model = p.sample((1000,)), q.sample((1000,))
    exact = toy_divergences(data, model, p.log_prob, q.log_prob)
    kde = toy_divergences(data, model, p.log_prob)
    assert exact["reverse_kl"].item() == pytest.approx(LOG8, abs=1e-3)
    assert kde["reverse_kl"].item() == pytest.approx(LOG8, abs=0.1)
    js_one_of_eight = 0.5 * (7 / 8 * LOG2 + 1 / 8 * math.log(2 / 9)) + 0.5 * math.log(16 / 9)
    for divergences in (exact, kde):
        assert divergences["forward_kl"].item() > 100
        assert divergences["js"].item() == pytest.approx(js_one_of_eight, abs=0.05)


def test_toy_divergences_evaluate_the_kde_leave_one_out_at_model_samples():
    p = isotropic_mixture(ring_centres(), 0.05)
    torch.manual_seed(29)
    data, model = p.sample((300,)), p.sample((200,))
    h = torch.tensor([0.02, 0.03], dtype=torch.float64)
    log_q_data = kde_log_prob(data, model, h)
    log_q_model = kde_log_prob(model, model, h, leave_one_out=True)
    expected = {
        "forward_kl": forward_kl(p.log_prob(data), log_q_data),
        "reverse_kl": reverse_kl(p.log_prob(model), log_q_model),
        "js": jensen_shannon(p.log_prob(data), log_q_data, p.log_prob(model), log_q_model),
    }
    got = toy_divergences(data, model, p.log_prob, bandwidth=h)
    assert {k: v.item() for k, v in got.items()} == pytest.approx({k: v.item() for k, v in expected.items()}, rel=1e-12)
