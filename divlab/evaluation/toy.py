"""Scores for 2-D mixtures with a known density: the VEEGAN/PacGAN mode protocol and
sample-based KL / Jensen–Shannon estimates (all in nats).

Mode protocol (Srivastava et al. 2017; Lin et al. 2018): a sample is high quality when it lies
within `threshold`·σ of its nearest mode centre; a mode is covered when it is the nearest
centre of at least `min_count` high-quality samples; the reverse KL is that of the histogram
of high-quality samples over modes against the uniform mixture weights.

Continuous divergences take log-densities at samples: log p is the data's exact density; log q
is the model's exact density when it has one, otherwise a Gaussian kernel density estimate
(KDE) of model samples.
"""
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)
CHUNK_SIZE = 1024
# Terms more than this many nats below a row's largest are raised to it before exp (see `gaussian_log_sums`).
NEGLIGIBLE_LOG_RATIO = 700.0

LogDensity = Callable[[Tensor], Tensor]
Bandwidth = float | Tensor | Callable[[Tensor], Tensor] | None


class ModeScores(NamedTuple):
    modes_covered: int
    high_quality_percent: float
    reverse_kl: float
    counts: Tensor


def nearest_mode(samples: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """(minₖ ‖x − μₖ‖, argminₖ ‖x − μₖ‖) for each sample x."""
    return torch.cdist(samples.double(), centres.double()).min(dim=1)


def mode_histogram_kl(counts: Tensor) -> Tensor:
    """KL(q̂ ‖ U) = Σₖ q̂ₖ log(K q̂ₖ) with q̂ₖ = countsₖ / Σ counts (0 log 0 = 0); +∞ if no counts.

    The "reverse KL" of the PacGAN paper's Table 1 (Lin et al. 2018): q̂ is the histogram of the
    high-quality samples over their nearest modes, U uniform over the K modes; it equals
    log K − H(q̂), with H(q̂) the "entropy of coverage" their code (`MetricLogger`) records.
    """
    total = counts.sum()
    if total == 0:
        return torch.tensor(math.inf, dtype=torch.float64)
    q = counts.double() / total
    return torch.special.xlogy(q, q * counts.numel()).sum()


def mode_scores(
    samples: Tensor, centres: Tensor, sigma: float, threshold: float = 3.0, min_count: int = 1
) -> ModeScores:
    """VEEGAN/PacGAN scores of samples (N, 2) against mode centres (K, 2) of std σ.

    high quality ⇔ minₖ ‖x − μₖ‖ ≤ threshold·σ;  countsₖ = #{high-quality x with nearest μₖ};
    modes covered = #{k : countsₖ ≥ min_count};  high_quality_percent = 100 · #high quality / N;
    reverse_kl = `mode_histogram_kl(counts)` (log K for a model stuck on one mode).
    """
    distance, index = nearest_mode(samples, centres)
    high_quality = distance <= threshold * sigma
    counts = torch.bincount(index[high_quality], minlength=centres.shape[0])
    return ModeScores(
        modes_covered=int((counts >= min_count).sum()),
        high_quality_percent=100.0 * high_quality.double().mean().item(),
        reverse_kl=mode_histogram_kl(counts).item(),
        counts=counts,
    )


def scott_bandwidth(samples: Tensor) -> Tensor:
    """Scott's rule per dimension: h_d = n^(−1/(d+4)) · std_d.

    It assumes a unimodal density and oversmooths well-separated narrow modes: on `ring8`
    (σ = 0.01, n = 2,500) it gives h ≈ 0.19, so a KDE-based KL is dominated by that smoothing;
    use `loo_bandwidth` there.
    """
    n, d = samples.shape
    return n ** (-1.0 / (d + 4)) * samples.double().std(dim=0)


def split_off_nearest_(sq_distances: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's smallest squared distance mᵢ (its nearest neighbour; a (rows, 1) column), and `sq_distances`
    reduced in place to the excesses dᵢⱼ² − mᵢ ≥ 0 (in place: a fresh 1024 × 2,500 float64 matrix costs its page
    faults, more than the arithmetic)."""
    nearest = sq_distances.amin(dim=1, keepdim=True)
    return nearest, sq_distances.sub_(nearest)


def gaussian_log_sums(nearest: Tensor, excess: Tensor, precision: float, out: Tensor | None = None) -> Tensor:
    """log Σⱼ exp(−precision · dᵢⱼ²) per row, from `split_off_nearest_` of the squared distances d²:

        −precision · mᵢ + log Σⱼ exp(−precision · (dᵢⱼ² − mᵢ)),

    a log-sum-exp about the row's largest term (its nearest neighbour's), so the sum is ≥ 1. Terms more than
    700 nats below it are raised to that floor before exp: a raised term adds at most e^−700 ≈ 1e−304, which
    cannot change a sum ≥ 1 (half an ulp of 1 is 1.1e−16), and a float64 exp below −708 underflows on a slow
    path at ~20× a normal one's cost, where a narrow kernel puts almost every far pair. One scaled copy of
    `excess` (into `out` when given, which may be `excess` itself), an in-place floor and exp, and a sum: a third
    of the passes of `torch.logsumexp` on the scaled distances, to float64 rounding the same value (tested).
    """
    terms = torch.mul(excess, -precision, out=out) if out is not None else excess * -precision
    terms.clamp_(min=-NEGLIGIBLE_LOG_RATIO).exp_()
    return terms.sum(dim=1).log() - precision * nearest.squeeze(1)


def _scaled_sq_distances(points: Tensor, samples: Tensor, bandwidth: Tensor) -> Tensor:
    return torch.cdist(points.double() / bandwidth, samples.double() / bandwidth).square_()


def _mask_self_(sq_distances: Tensor, self_columns: Tensor) -> Tensor:
    """Row i's distance to sample `self_columns[i]` set to +inf, in place (its kernel left out)."""
    sq_distances[torch.arange(sq_distances.shape[0]), self_columns] = math.inf
    return sq_distances


def loo_bandwidth(
    samples: Tensor, scales: Tensor | None = None, max_rows: int = 512, chunk_size: int = CHUNK_SIZE
) -> Tensor:
    """h = c* · h_Scott with c* = argmax_c Σᵢ log q̂₋ᵢ(xᵢ; c · h_Scott): leave-one-out maximum
    likelihood, which adapts to narrow modes where Scott's rule cannot.

    c ranges over `scales` (default 20 values log-spaced in [10⁻³, 3]); the sum over i runs over
    at most `max_rows` evenly strided samples (each against all n), an unbiased estimate of the
    full leave-one-out objective at O(max_rows · n) cost per scale.

    Each row's log-sum-exp is taken about its nearest neighbour, which is the largest term at every
    scale (`gaussian_log_sums`), so the excesses over it are computed once for all scales, and each scale
    costs one scaled copy of them into a reused buffer, an exp and a sum.
    """
    scales = torch.logspace(-3, math.log10(3.0), 20, dtype=torch.float64) if scales is None else scales.double()
    base = scott_bandwidth(samples)
    n, d = samples.shape
    rows = torch.arange(0, n, math.ceil(n / max_rows))
    totals = torch.zeros_like(scales)
    for block in torch.split(rows, chunk_size):
        sq = _mask_self_(_scaled_sq_distances(samples[block], samples, base), block)
        nearest, excess = split_off_nearest_(sq)  # +inf on the left-out sample
        terms = torch.empty_like(excess)
        for index, scale in enumerate(scales.tolist()):
            totals[index] += gaussian_log_sums(nearest, excess, 0.5 / scale**2, out=terms).sum()
    log_likelihood = totals - rows.numel() * d * scales.log()
    return scales[log_likelihood.argmax()] * base


def resolve_bandwidth(bandwidth: Bandwidth, samples: Tensor) -> Tensor:
    """Per-dimension bandwidth (d,): Scott's rule for None, a rule's value for a callable
    (e.g. `loo_bandwidth`), else the given number(s) broadcast over dimensions."""
    if bandwidth is None:
        bandwidth = scott_bandwidth
    if callable(bandwidth):
        bandwidth = bandwidth(samples)
    return torch.as_tensor(bandwidth, dtype=torch.float64).expand(samples.shape[1]).clone()


def kde_log_prob(
    points: Tensor,
    samples: Tensor,
    bandwidth: Bandwidth = None,
    leave_one_out: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> Tensor:
    """log q̂(x) = log (1/n) Σᵢ N(x; xᵢ, diag(h²))
               = logsumexp_i(−½ Σ_d ((x_d − x_{i,d}) / h_d)²) − log n − Σ_d log h_d − (d/2) log 2π.

    With `leave_one_out`, points must be the samples themselves and q̂₋ᵢ(xᵢ) drops xᵢ's own
    kernel (n → n − 1), removing the in-sample bias when q̂ is evaluated where it was fitted.
    """
    h = resolve_bandwidth(bandwidth, samples)
    n, d = samples.shape
    if leave_one_out and points.shape != samples.shape:
        raise ValueError("leave_one_out needs points to be the samples the KDE is fitted on")
    log_sums = []
    for start in range(0, points.shape[0], chunk_size):
        sq = _scaled_sq_distances(points[start:start + chunk_size], samples, h)
        if leave_one_out:
            _mask_self_(sq, torch.arange(start, start + sq.shape[0]))
        nearest, excess = split_off_nearest_(sq)
        log_sums.append(gaussian_log_sums(nearest, excess, 0.5, out=excess))
    n_kernels = n - 1 if leave_one_out else n
    return torch.cat(log_sums) - math.log(n_kernels) - h.log().sum() - 0.5 * d * LOG_2PI


def gaussian_kde(samples: Tensor, bandwidth: Bandwidth = None) -> LogDensity:
    """x ↦ log q̂(x), the KDE of samples with the bandwidth resolved once."""
    h = resolve_bandwidth(bandwidth, samples)
    return lambda points: kde_log_prob(points, samples, h)


def forward_kl(log_p_data: Tensor, log_q_data: Tensor) -> Tensor:
    """KL(P ‖ Q) ≈ (1/N) Σ_{x ∼ P} [log p(x) − log q(x)]  (mass-covering: large when Q drops modes)."""
    return (log_p_data.double() - log_q_data.double()).mean()


def reverse_kl(log_p_model: Tensor, log_q_model: Tensor) -> Tensor:
    """KL(Q ‖ P) ≈ (1/M) Σ_{x ∼ Q} [log q(x) − log p(x)]  (mode-seeking: log K for one of K modes)."""
    return (log_q_model.double() - log_p_model.double()).mean()


def jensen_shannon(log_p_data: Tensor, log_q_data: Tensor, log_p_model: Tensor, log_q_model: Tensor) -> Tensor:
    """JS(P, Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M), M = (P + Q)/2, by Monte Carlo on both sample sets:

    ½ E_P[log 2p/(p+q)] + ½ E_Q[log 2q/(p+q)],  log 2p/(p+q) = log 2 − softplus(log q − log p).
    Each term is ≤ log 2, so the estimate lies in (−∞, log 2]; it is ≈ log 2 for disjoint supports.
    """
    data_term = math.log(2) - F.softplus(log_q_data.double() - log_p_data.double())
    model_term = math.log(2) - F.softplus(log_p_model.double() - log_q_model.double())
    return 0.5 * data_term.mean() + 0.5 * model_term.mean()


def toy_divergences(
    data_samples: Tensor,
    model_samples: Tensor,
    log_p: LogDensity,
    log_q: LogDensity | None = None,
    bandwidth: Bandwidth = loo_bandwidth,
) -> dict[str, Tensor]:
    """Forward KL, reverse KL and JS (nats) between data P and model Q from samples of each.

    log q is the model's exact log-density when given; otherwise a KDE of `model_samples`
    (bandwidth as in `resolve_bandwidth`, leave-one-out by default: Scott's rule oversmooths the
    narrow toy modes), evaluated leave-one-out at the model samples.
    """
    log_p_data, log_p_model = log_p(data_samples), log_p(model_samples)
    if log_q is None:
        h = resolve_bandwidth(bandwidth, model_samples)
        log_q_data = kde_log_prob(data_samples, model_samples, h)
        log_q_model = kde_log_prob(model_samples, model_samples, h, leave_one_out=True)
    else:
        log_q_data, log_q_model = log_q(data_samples), log_q(model_samples)
    return {
        "forward_kl": forward_kl(log_p_data, log_q_data),
        "reverse_kl": reverse_kl(log_p_model, log_q_model),
        "js": jensen_shannon(log_p_data, log_q_data, log_p_model, log_q_model),
    }
