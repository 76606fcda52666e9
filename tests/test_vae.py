import functools
import math

import pytest
import torch

from divlab.datamodules.toy2d import Toy2DDataModule
from divlab.lightning_modules.networks.conv import ConvDecoder, ConvEncoder
from divlab.lightning_modules.networks.mlp import MLP
from divlab.lightning_modules.vae import VAE

ADAM = functools.partial(torch.optim.Adam, lr=3e-3)


def _toy_vae(**kw):
    return VAE(
        (2,),
        functools.partial(MLP, hidden=64),
        functools.partial(MLP, hidden=64),
        ADAM,
        latent_dim=2,
        likelihood="gaussian",
        **kw,
    )


@pytest.fixture(scope="module")
def trained_toy_vae():
    torch.manual_seed(0)
    data = Toy2DDataModule("grid25", n_train=4096)
    data.setup()
    model = _toy_vae()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = data.splits["train"]
    for step in range(400):
        batch = x[torch.randint(len(x), (256,))]
        loss = model.negative_elbo(batch)[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, data.splits["val"][:256]


def test_iwae_bound_is_above_elbo_and_non_decreasing_in_k(trained_toy_vae):
    model, x = trained_toy_vae
    torch.manual_seed(1)
    elbo = -torch.stack([model.negative_elbo(x)[0] for _ in range(64)]).mean().item()
    bounds = [model.log_likelihood(x, k).mean().item() for k in (1, 8, 64, 256)]
    assert abs(bounds[0] - elbo) < 0.15
    assert bounds[1] > elbo
    assert all(b_small <= b_large + 0.02 for b_small, b_large in zip(bounds, bounds[1:])), bounds


def test_one_training_step_changes_parameters_and_is_finite():
    torch.manual_seed(0)
    model = VAE((1, 8, 8), functools.partial(ConvEncoder, width=8), functools.partial(ConvDecoder, width=8), ADAM)
    x = torch.randint(0, 256, (16, 1, 8, 8)).float() / 127.5 - 1
    before = [p.detach().clone() for p in model.parameters()]
    opt = model.configure_optimizers()
    loss = model.negative_elbo(x)[0].mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert model.sample(5).shape == (5, 1, 8, 8)
    assert model.sample(5).abs().max() <= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta": -1.0}, "model.beta must be >= 0"),
        ({"likelihood": "poisson"}, "unknown likelihood 'poisson'; valid choices: bernoulli"),
        ({"optimizer": functools.partial(torch.optim.Adam, lr=-1e-3)}, "optimizer.lr must be > 0"),
        ({"optimizer": functools.partial(torch.optim.Adam, lr=0.0)}, "optimizer.lr must be > 0"),
    ],
)
def test_bad_hyperparameters_fail_early_with_the_value(kwargs, message):
    args = dict(encoder=MLP, decoder=MLP, optimizer=ADAM) | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        VAE((2,), **args)


@pytest.mark.parametrize("likelihood, discrete", [("discretized_gaussian", True), ("bernoulli", True),
                                                  ("gaussian", False)])
def test_only_the_gaussian_decoder_gives_a_density(likelihood, discrete):
    vae = VAE((2,), functools.partial(MLP, hidden=8), functools.partial(MLP, hidden=8), ADAM, likelihood=likelihood)
    assert vae.log_likelihood_is_discrete is discrete


class LinearGaussianDecoder(torch.nn.Module):
    """p(x | z) = N(w z + b, σ² I) for a 1-d latent and 2-d data."""

    def __init__(self, w, b, sigma):
        super().__init__()
        self.w, self.b, self.log_sigma = torch.tensor(w), torch.tensor(b), math.log(sigma)

    def forward(self, z):
        mean = z * self.w + self.b
        return torch.cat([mean, torch.full_like(mean, self.log_sigma)], dim=1)


class ExactPosteriorEncoder(torch.nn.Module):
    """q(z | x) = p(z | x) = N(s² wᵀ(x − b)/σ², s²), s² = 1/(1 + wᵀw/σ²): far from the prior (s² = 1/21)."""

    def __init__(self, w, b, sigma):
        super().__init__()
        self.w, self.b, self.sigma2 = torch.tensor(w), torch.tensor(b), sigma**2
        self.var = 1.0 / (1.0 + (self.w @ self.w).item() / self.sigma2)

    def forward(self, x):
        mean = self.var * ((x - self.b) @ self.w)[:, None] / self.sigma2
        return torch.cat([mean, torch.full_like(mean, math.log(self.var))], dim=1)


def test_elbo_and_iwae_equal_the_exact_marginal_with_the_exact_posterior():
    # Linear-Gaussian model: p(x) = N(b, w wᵀ + σ² I) in closed form; with q = p(z|x) every importance
    # weight is p(x), so the IWAE bound is exact for every K (a wrong log q term shifts it).
    w, b, sigma = [2.0, 1.0], [0.3, -0.2], 0.5
    vae = VAE((2,), lambda in_shape, out_shape: ExactPosteriorEncoder(w, b, sigma),
              lambda in_shape, out_shape: LinearGaussianDecoder(w, b, sigma), ADAM, latent_dim=1, likelihood="gaussian")
    x = torch.tensor([[1.0, 0.5], [-2.0, 0.3], [0.0, 0.0]])
    cov = torch.outer(torch.tensor(w), torch.tensor(w)) + sigma**2 * torch.eye(2)
    exact = torch.distributions.MultivariateNormal(torch.tensor(b), cov).log_prob(x)
    torch.manual_seed(0)
    for k in (1, 16):
        torch.testing.assert_close(vae.log_likelihood(x, k), exact, atol=1e-4, rtol=1e-5)
    # The training ELBO (reconstruction + analytic KL) is exact only in expectation over z.
    draws = -vae.negative_elbo(x.repeat_interleave(20_000, 0))[0].view(3, -1).double()
    standard_error = draws.std(1) / math.sqrt(draws.shape[1])
    assert ((draws.mean(1) - exact.double()).abs() < 4 * standard_error).all()
    assert (standard_error < 0.02).all()
    assert vae.encode(x)[1][0].item() == pytest.approx(math.log(1 / 21), rel=1e-6)
