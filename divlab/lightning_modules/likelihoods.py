"""Log-likelihoods, KL terms and bounds shared by the likelihood-based families.

Pure tensor math. Every function returns per-element terms (no reduction) unless its name says
otherwise, so callers choose how to sum over dimensions and average over the batch.
"""
import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def sum_over_dims(x: torch.Tensor) -> torch.Tensor:
    """Per-element terms [B, ...] → one value per example [B]."""
    return x.flatten(1).sum(1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log N(x; μ, σ²) = −½ log 2π − log σ − (x − μ)² / 2σ²  (σ = exp(log_scale))."""
    return -0.5 * LOG_2PI - log_scale - 0.5 * ((x - mean) * torch.exp(-log_scale)) ** 2


def standard_normal_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − 1 − log σ²), elementwise."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) = ½ (log σ₂²/σ₁² + (σ₁² + (μ₁ − μ₂)²)/σ₂² − 1), elementwise."""
    return 0.5 * (logvar2 - logvar1 + (logvar1.exp() + (mean1 - mean2) ** 2) * torch.exp(-logvar2) - 1.0)


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, n_bins: int = 256
) -> torch.Tensor:
    """log P(x) of 8-bit data under a Gaussian discretised to `n_bins` bins on [−1, 1].

    x must lie on the grid {−1 + 2k/(n_bins − 1)}. The bin of x is [x − δ, x + δ] with
    δ = 1/(n_bins − 1); the edge bins extend to ±∞, so the masses sum to 1 over the grid
    (Ho et al. 2020, eq. 13). This is an exact discrete likelihood: no dequantisation needed.
    """
    half_bin = 1.0 / (n_bins - 1)
    centred = x - mean
    inv_scale = torch.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inv_scale * (centred + half_bin))
    cdf_minus = _standard_normal_cdf(inv_scale * (centred - half_bin))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_bin_mass = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    edge = 1.0 - 1e-3
    return torch.where(x < -edge, log_cdf_plus, torch.where(x > edge, log_one_minus_cdf_minus, log_bin_mass))


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bern(b; σ(logits)) with b = (x + 1)/2 for binarised data x ∈ {−1, 1}."""
    return -F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="none")


def importance_weighted_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """IWAE bound log (1/K) Σ_k w_k from log w_k = log p(x, z_k) − log q(z_k | x), shape [K, B].

    K = 1 is the ELBO; the bound is non-decreasing in K (Burda et al. 2016).
    """
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


def bits_per_dim(nll_nats: torch.Tensor, num_dims: int) -> torch.Tensor:
    """Convert a negative log-likelihood per example (nats) to bits per dimension."""
    return nll_nats / (num_dims * math.log(2.0))


def token_log_likelihoods(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(x_t | x_<t) of each observed token under categorical logits [..., V]; shape of `tokens`."""
    return -F.cross_entropy(logits.float().flatten(0, -2), tokens.flatten(), reduction="none").view(tokens.shape)


def bits_per_character(nll_nats: torch.Tensor, n_chars: torch.Tensor) -> torch.Tensor:
    """Total negative log-likelihood (nats) of a text → bits per character of that text.

    For subword tokens, n_chars counts the characters the tokens cover, so models with different
    tokenizers compare on the same text: bpc = Σ_t −log₂ p(x_t | x_<t) / #chars.
    """
    return nll_nats / (n_chars * math.log(2.0))
