import functools
import math

import torch

from divlab.lightning_modules.likelihoods import (
    discretized_gaussian_log_likelihood,
    gaussian_log_prob,
    importance_weighted_bound,
    normal_kl,
    standard_normal_kl,
)


def test_standard_normal_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mean, logvar = torch.tensor([0.7, -1.2]), torch.tensor([-0.5, 0.8])
    z = mean + (0.5 * logvar).exp() * torch.randn(400_000, 2)
    log_q = gaussian_log_prob(z, mean, 0.5 * logvar)
    log_p = gaussian_log_prob(z, torch.zeros(2), torch.zeros(2))
    mc = (log_q - log_p).mean(0)
    torch.testing.assert_close(mc, standard_normal_kl(mean, logvar), atol=0.01, rtol=0.01)
    torch.testing.assert_close(normal_kl(mean, logvar, torch.zeros(2), torch.zeros(2)), standard_normal_kl(mean, logvar))


def test_discretized_gaussian_is_a_distribution_over_the_8bit_grid():
    grid = torch.linspace(-1, 1, 256)
    for mean, log_scale in [(0.0, -2.0), (0.93, -4.0), (-1.2, 0.5)]:
        log_p = discretized_gaussian_log_likelihood(grid, torch.full_like(grid, mean), torch.full_like(grid, log_scale))
        assert abs(log_p.exp().sum().item() - 1.0) < 1e-4


def test_discretized_gaussian_bin_mass_matches_cdf_difference():
    x, mean, log_scale = torch.tensor([2 * 100 / 255 - 1]), torch.tensor([-0.1]), torch.tensor([-1.5])
    normal = torch.distributions.Normal(mean, log_scale.exp())
    expected = normal.cdf(x + 1 / 255) - normal.cdf(x - 1 / 255)
    torch.testing.assert_close(discretized_gaussian_log_likelihood(x, mean, log_scale).exp(), expected, rtol=1e-4, atol=1e-7)


def test_iwae_of_exact_weights_is_log_mean():
    log_w = torch.log(torch.tensor([[1.0], [3.0]]))
    torch.testing.assert_close(importance_weighted_bound(log_w), torch.tensor([math.log(2.0)]))
