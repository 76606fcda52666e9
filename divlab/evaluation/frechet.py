"""Fréchet distance and kernel (KID) distance between two sets of features.

Pure tensor math in float64. The image callbacks feed these with features from a small domain
classifier (or Inception where its weights are present); `feature_fid_metric` and
`feature_kid_metric` wrap the same feature network in torchmetrics' metrics, whose states sync
across ranks.
"""
import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from divlab.lightning_modules.divergences import mmd2_from_kernels


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """μ = (1/n) Σ xᵢ and Σ = (1/(n−1)) Σ (xᵢ − μ)(xᵢ − μ)ᵀ of features (n, d), in float64."""
    x = features.reshape(features.shape[0], -1).double()
    mu = x.mean(dim=0)
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)


def _psd_eigenvalues(eigenvalues: Tensor) -> Tensor:
    """λ with values under the round-off level d·ε·max|λ| set to 0, so √ does not amplify them."""
    tolerance = eigenvalues.numel() * torch.finfo(eigenvalues.dtype).eps * eigenvalues.abs().max()
    return torch.where(eigenvalues > tolerance, eigenvalues, torch.zeros_like(eigenvalues))


def psd_sqrtm(matrix: Tensor) -> Tensor:
    """A^½ = V diag(√λ) Vᵀ for symmetric positive semi-definite A = V diag(λ) Vᵀ."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors * _psd_eigenvalues(eigenvalues).sqrt() @ eigenvectors.T


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """Tr((Σ₁Σ₂)^½) = Tr((Σ₁^½ Σ₂ Σ₁^½)^½) = Σᵢ √λᵢ(Σ₁^½ Σ₂ Σ₁^½).

    Σ₁Σ₂ is similar to the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½, so its eigenvalues are real and
    non-negative; `eigvalsh` on the symmetric form avoids the complex square roots of
    `scipy.linalg.sqrtm(Σ₁Σ₂)`.
    """
    root1 = psd_sqrtm(sigma1)
    inner = root1 @ sigma2 @ root1
    return _psd_eigenvalues(torch.linalg.eigvalsh((inner + inner.T) / 2)).sqrt().sum()


def frechet_distance_gaussians(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """d²(N(μ₁, Σ₁), N(μ₂, Σ₂)) = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)  (Dowson & Landau 1982)."""
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    return (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2)


def frechet_distance(features1: Tensor, features2: Tensor) -> Tensor:
    """FID-style distance: the Fréchet distance between Gaussians fitted to two feature sets (n, d)."""
    return frechet_distance_gaussians(*feature_statistics(features1), *feature_statistics(features2))


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, coef: float = 1.0) -> Tensor:
    """k(x, y) = (xᵀy / d + c)^degree, the KID kernel (cubic, c = 1) between rows of x and y."""
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(x: Tensor, y: Tensor, degree: int = 3, coef: float = 1.0) -> Tensor:
    """Unbiased MMD² with the polynomial kernel (Gretton et al. 2012, eq. 3):

    MMD²ᵤ = 1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(n(n−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/(mn) Σᵢⱼ k(xᵢ, yⱼ).
    """
    x, y = x.double(), y.double()
    return mmd2_from_kernels(polynomial_kernel(x, x, degree, coef), polynomial_kernel(y, y, degree, coef),
                             polynomial_kernel(x, y, degree, coef))


def kid_subset_size(n1: int, n2: int, requested: int | None = None) -> int:
    """Rows per KID subset: `requested`, at most half the smaller set (default: that half).

    KID's standard deviation is the spread of MMD²ᵤ over random subsets (torch-fidelity draws 100
    subsets of 1,000 from 50,000 images). A subset as large as the whole set is the set reordered,
    every estimate is the same number and the "std" is float round-off, so subsets here take at
    most ⌊min(n₁, n₂)/2⌋ rows: two subsets then share about half their rows, a genuine spread.
    """
    half = min(n1, n2) // 2
    if half < 2:
        raise ValueError(f"KID needs at least 4 samples of each set, got {n1} and {n2}")
    return half if requested is None else min(requested, half)


def kernel_inception_distance(
    features1: Tensor,
    features2: Tensor,
    subsets: int = 100,
    subset_size: int | None = 1000,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """KID (Bińkowski et al. 2018): mean and (population) std of MMD²ᵤ with the cubic kernel.

    Each of `subsets` estimates uses m = `kid_subset_size(n₁, n₂, subset_size)` rows (at most
    half the smaller set) drawn without replacement from each set; the mean is unbiased for MMD²,
    so it is ≈ 0 (and can be slightly negative) when both sets come from one distribution.
    """
    x = features1.reshape(features1.shape[0], -1)
    y = features2.reshape(features2.shape[0], -1)
    m = kid_subset_size(x.shape[0], y.shape[0], subset_size)
    estimates = torch.stack([
        mmd2_unbiased(
            x[torch.randperm(x.shape[0], generator=generator)[:m]],
            y[torch.randperm(y.shape[0], generator=generator)[:m]],
        )
        for _ in range(subsets)
    ])
    return estimates.mean(), estimates.std(unbiased=False)


class FrozenFeatures(nn.Module):
    """A feature network as torchmetrics expects it: `num_features` set, always in eval mode.

    torchmetrics' metrics never call `.eval()` on a custom feature module, so a network with
    batch norm or dropout would otherwise give features that depend on the caller's mode.
    """

    def __init__(self, net: nn.Module, num_features: int):
        super().__init__()
        self.net = net
        self.num_features = num_features
        self.train(False)

    def train(self, mode: bool = True) -> "FrozenFeatures":
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


def _frozen(feature_net: nn.Module, num_features: int | None, sample_input: Tensor | None) -> FrozenFeatures:
    num_features = num_features or getattr(feature_net, "num_features", None)
    if num_features is None:
        if sample_input is None:
            raise ValueError("give `num_features`, a `feature_net.num_features` attribute, or a `sample_input`")
        with torch.no_grad():
            num_features = feature_net.eval()(sample_input[:1]).flatten(1).shape[1]
    return FrozenFeatures(feature_net, int(num_features))


def feature_fid_metric(
    feature_net: nn.Module,
    num_features: int | None = None,
    sample_input: Tensor | None = None,
    **metric_kwargs,
) -> FrechetInceptionDistance:
    """torchmetrics' `FrechetInceptionDistance` on the features of a custom network.

    Findings from torchmetrics 1.9's source (`torchmetrics/image/fid.py`):
    - `FrechetInceptionDistance(feature=module)` accepts any `nn.Module` whose forward maps a
      batch to (N, d) features; torch-fidelity is only needed for the Inception default
      (`feature=int`), and it is not installed here.
    - d is read from `module.num_features` (int or Tensor); without it the metric calls the
      module on a dummy image of shape `(1, *input_img_size)` (default (3, 299, 299), float in
      [0, 1] when `normalize=True`, uint8 otherwise), which fails for small-image networks.
      This helper always sets `num_features`, so neither `normalize` nor `input_img_size` matters.
    - With a custom module, `update(imgs, real)` passes `imgs` to the module unchanged (no
      ×255, no resizing): give it images in the layout the network was trained on (divlab's
      [−1, 1] floats). `update` runs under `torch.no_grad`, but the module's train/eval mode is
      left alone, hence `FrozenFeatures`.
    - States are float64 running sums (Σx, Σxxᵀ, n) synced by summation across ranks;
      `compute` returns ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂) − 2 Σ √eig(Σ₁Σ₂), cast to the features' dtype.
      `reset_real_features=False` keeps the real statistics across `reset()`.
    """
    return FrechetInceptionDistance(feature=_frozen(feature_net, num_features, sample_input), **metric_kwargs)


def feature_kid_metric(
    feature_net: nn.Module,
    num_features: int | None = None,
    sample_input: Tensor | None = None,
    **metric_kwargs,
) -> KernelInceptionDistance:
    """torchmetrics' `KernelInceptionDistance` on the features of a custom network.

    Same custom-module contract as `feature_fid_metric`; KID keeps every feature vector (list
    states gathered across ranks), needs at least `subset_size` (default 1000) samples of each
    kind, and returns (kid_mean, kid_std) with γ = 1/d, c = 1, degree 3 like
    `kernel_inception_distance`.
    """
    return KernelInceptionDistance(feature=_frozen(feature_net, num_features, sample_input), **metric_kwargs)
