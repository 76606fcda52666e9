import math

import torch

from divlab.lightning_modules.likelihoods import (
    discretized_gaussian_log_likelihood,
    gaussian_log_prob,
    importance_weighted_bound,
    normal_kl,
    standard_normal_kl,
)


def test_gaussian_log_prob_is_torch_distributions_normal():
    x, mean, log_scale = torch.tensor([0.3, -2.0, 5.0]), torch.tensor([0.0, -1.5, 4.0]), torch.tensor([0.2, -1.0, 1.5])
    expected = torch.distributions.Normal(mean, log_scale.exp()).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(x, mean, log_scale), expected)


def test_normal_kls_match_torch_distributions():
    mean1, logvar1 = torch.tensor([0.7, -1.2, 0.0]), torch.tensor([-0.5, 0.8, 2.0])
    mean2, logvar2 = torch.tensor([-0.3, 0.4, 1.0]), torch.tensor([0.3, -1.1, 0.0])
    q = torch.distributions.Normal(mean1, (0.5 * logvar1).exp())
    reference = torch.distributions.kl_divergence(q, torch.distributions.Normal(mean2, (0.5 * logvar2).exp()))
    torch.testing.assert_close(normal_kl(mean1, logvar1, mean2, logvar2), reference)
    standard = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(standard_normal_kl(mean1, logvar1), standard)


def test_discretized_gaussian_is_a_distribution_over_the_8bit_grid():
    grid = torch.linspace(-1, 1, 256)
    for mean, log_scale in [(0.0, -2.0), (0.93, -4.0), (-1.2, 0.5)]:
        log_p = discretized_gaussian_log_likelihood(grid, torch.full_like(grid, mean), torch.full_like(grid, log_scale))
        assert abs(log_p.exp().sum().item() - 1.0) < 1e-4


def test_discretized_gaussian_bin_mass_matches_cdf_difference():
    x, mean, log_scale = torch.tensor([2 * 100 / 255 - 1]), torch.tensor([-0.1]), torch.tensor([-1.5])
    normal = torch.distributions.Normal(mean, log_scale.exp())
    expected = normal.cdf(x + 1 / 255) - normal.cdf(x - 1 / 255)
    torch.testing.assert_close(
        discretized_gaussian_log_likelihood(x, mean, log_scale).exp(), expected, rtol=1e-4, atol=1e-7
    )


def test_iwae_of_exact_weights_is_log_mean():
    log_w = torch.log(torch.tensor([[1.0], [3.0]]))
    torch.testing.assert_close(importance_weighted_bound(log_w), torch.tensor([math.log(2.0)]))
