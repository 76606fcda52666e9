"""Variational autoencoder: maximises the ELBO, i.e. minimises an upper bound on KL(P_X ‖ P_θ).

−ELBO(x) = E_q(z|x)[−log p_θ(x|z)] + β · KL(q(z|x) ‖ N(0, I)); β = 1 gives the bound.
"""
from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import torch

from divlab.lightning_modules.contracts import FamilyModule, GenerativeModule, LikelihoodModel
from divlab.lightning_modules.likelihoods import (
    bernoulli_log_likelihood,
    discretized_gaussian_log_likelihood,
    gaussian_log_prob,
    importance_weighted_bound,
    standard_normal_kl,
)
from divlab.lightning_modules.optim import make_optimizer
from divlab.lightning_modules.step_logging import is_logging_step
from divlab.validation import check_choice, check_positive, optimizer_lr

LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 2.0


def _log_scale(raw: torch.Tensor) -> torch.Tensor:
    return raw.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)


def _bernoulli_log_px(x, params):
    return bernoulli_log_likelihood(x, params[0])


def _bernoulli_mean(params):
    return torch.sigmoid(params[0]) * 2 - 1


def _discretized_gaussian_log_px(x, params):
    return discretized_gaussian_log_likelihood(x, params[0], _log_scale(params[1]))


def _clamped_mean(params):
    return params[0].clamp(-1, 1)


def _gaussian_log_px(x, params):
    return gaussian_log_prob(x, params[0], _log_scale(params[1]))


def _gaussian_draw(params):
    return params[0] + _log_scale(params[1]).exp() * torch.randn_like(params[0])


@dataclass(frozen=True)
class DecoderLikelihood:
    """p(x | z) given the decoder's `n_params` outputs per dimension; `draw` is what `sample` returns."""

    n_params: int
    log_prob: Callable
    draw: Callable


# Images decode to the likelihood's mean (conventional for grids and FID); points draw from p(x|z).
DECODER_LIKELIHOODS = {
    "bernoulli": DecoderLikelihood(1, _bernoulli_log_px, _bernoulli_mean),
    "discretized_gaussian": DecoderLikelihood(2, _discretized_gaussian_log_px, _clamped_mean),
    "gaussian": DecoderLikelihood(2, _gaussian_log_px, _gaussian_draw),
}


class VAE(L.LightningModule, FamilyModule, GenerativeModule, LikelihoodModel):
    family = "vae"
    divergence = "elbo"
    validation_metrics = ("loss", "kl")
    draws_training_noise = True
    log_likelihood_is_exact = False
    log_likelihood_bound = "iwae"
    log_likelihood_matches_sample = True

    @property
    def log_likelihood_is_discrete(self) -> bool:
        """A probability of the data's values (8-bit or binary), or with `likelihood=gaussian` a density."""
        return self.hparams.likelihood != "gaussian"

    def __init__(
        self,
        data_shape,
        encoder,
        decoder,
        optimizer,
        latent_dim: int = 16,
        likelihood: str = "discretized_gaussian",
        beta: float = 1.0,
        iw_samples: int = 64,
    ):
        super().__init__()
        check_choice("likelihood", likelihood, DECODER_LIKELIHOODS)
        check_positive("model.beta", beta, allow_zero=True)
        check_positive("model.latent_dim", latent_dim)
        check_positive("model.iw_samples", iw_samples)
        self.save_hyperparameters(ignore=["encoder", "decoder", "optimizer"])
        self.hparams.update(family=self.family, divergence=self.divergence, lr=optimizer_lr(optimizer))
        self.data_shape = tuple(data_shape)
        self.likelihood = DECODER_LIKELIHOODS[likelihood]
        out_shape = (self.likelihood.n_params * self.data_shape[0], *self.data_shape[1:])
        self.encoder = encoder(in_shape=self.data_shape, out_shape=(2 * latent_dim,))
        self.decoder = decoder(in_shape=(latent_dim,), out_shape=out_shape)
        self.optimizer = optimizer

    def encode(self, x: torch.Tensor):
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor):
        return self.decoder(z).chunk(self.likelihood.n_params, dim=1)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.likelihood.log_prob(x, self.decode(z)).flatten(1).sum(1)

    def negative_elbo(self, x: torch.Tensor, beta: float = 1.0):
        mean, logvar = self.encode(x)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        recon = -self.log_px_given_z(x, z)
        kl = standard_normal_kl(mean, logvar).sum(1)
        return recon + beta * kl, recon, kl

    def training_step(self, x: torch.Tensor, batch_idx: int):
        loss, recon, kl = self.negative_elbo(x, self.hparams.beta)
        if is_logging_step(self, batch_idx):
            self.log_dict({"train/loss": loss.mean(), "train/recon": recon.mean(), "train/kl": kl.mean()},
                          prog_bar=True)
        return loss.mean()

    def validation_step(self, x: torch.Tensor, batch_idx: int):
        loss, recon, kl = self.negative_elbo(x)
        self.log_dict({"val/loss": loss.mean(), "val/kl": kl.mean()}, sync_dist=True, prog_bar=True)

    def test_step(self, x: torch.Tensor, batch_idx: int):
        loss, _, _ = self.negative_elbo(x)
        self.log("test/loss", loss.mean(), sync_dist=True)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.hparams.latent_dim, device=self.device)
        return self.likelihood.draw(self.decode(z))

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """IWAE bound on log p(x) in nats with K importance samples (a lower bound; K = 1 is the ELBO)."""
        k = k or self.hparams.iw_samples
        mean, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        log_w = []
        for _ in range(k):
            z = mean + std * torch.randn_like(mean)
            log_q = gaussian_log_prob(z, mean, 0.5 * logvar).sum(1)
            log_prior = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
            log_w.append(self.log_px_given_z(x, z) + log_prior - log_q)
        return importance_weighted_bound(torch.stack(log_w))

    def configure_optimizers(self):
        return make_optimizer(self.optimizer, self.parameters(), self)
