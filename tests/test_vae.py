import functools

import pytest
import torch

from divlab.datamodules.toy2d import Toy2DDataModule
from divlab.lightning_modules.networks.conv import ConvDecoder, ConvEncoder
from divlab.lightning_modules.networks.mlp import MLP
from divlab.lightning_modules.vae import VAE

ADAM = functools.partial(torch.optim.Adam, lr=3e-3)


def _toy_vae(**kw):
    return VAE((2,), functools.partial(MLP, hidden=64), functools.partial(MLP, hidden=64), ADAM, latent_dim=2, likelihood="gaussian", **kw)


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
