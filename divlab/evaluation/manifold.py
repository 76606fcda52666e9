"""k-NN manifold metrics: improved precision/recall and density/coverage.

Each real point xᵢ gets a ball B(xᵢ, NND_k(xᵢ)) whose radius is the distance to its k-th
nearest other real point; the union of balls estimates the real manifold (and likewise for the
fake points yⱼ). Distances come from `torch.cdist` in blocks of `chunk_size` rows, so memory
is O(chunk_size · n) and 10k × 10k sets fit. They are computed pair by pair in float64, never
through the ‖a‖² + ‖b‖² − 2aᵀb matrix product: a point on the boundary of a ball (a real point's
k-th neighbour, or a fake sample equal to it) must get the same distance in the radius and in
the count, or ≤ flips on round-off (density of a set against itself is exactly (k + 1)/k).
"""
import torch
from torch import Tensor

CHUNK_SIZE = 1024


def pairwise_distances(a: Tensor, b: Tensor) -> Tensor:
    """‖aᵢ − bⱼ‖ for rows of a and b, float64, the same value whichever block a pair is computed in."""
    return torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")


def kth_nearest_distance(x: Tensor, k: int, chunk_size: int = CHUNK_SIZE) -> Tensor:
    """NND_k(xᵢ): distance from each row of x to its k-th nearest other row (self excluded)."""
    if not 0 < k < x.shape[0]:
        raise ValueError(f"k must lie in [1, {x.shape[0] - 1}] for {x.shape[0]} points, got {k}")
    return torch.cat([
        pairwise_distances(block, x).topk(k + 1, dim=1, largest=False).values[:, k]
        for block in torch.split(x, chunk_size)
    ])


def nearest_distance(points: Tensor, others: Tensor, chunk_size: int = CHUNK_SIZE) -> Tensor:
    """minⱼ ‖pᵢ − oⱼ‖ for each row pᵢ of points."""
    return torch.cat([pairwise_distances(block, others).amin(dim=1) for block in torch.split(points, chunk_size)])


def ball_counts(points: Tensor, centres: Tensor, radii: Tensor, chunk_size: int = CHUNK_SIZE) -> Tensor:
    """#{i : ‖pⱼ − cᵢ‖ ≤ rᵢ} for each row pⱼ of points: how many closed balls B(cᵢ, rᵢ) hold it."""
    return torch.cat([
        (pairwise_distances(block, centres) <= radii).sum(dim=1) for block in torch.split(points, chunk_size)
    ])


def _flat(features: Tensor) -> Tensor:
    x = features.reshape(features.shape[0], -1)
    return x if x.is_floating_point() else x.float()


def precision_recall(
    real: Tensor, fake: Tensor, k: int = 3, chunk_size: int = CHUNK_SIZE
) -> tuple[Tensor, Tensor]:
    """Improved precision and recall (Kynkäänniemi et al. 2019):

    precision = (1/M) Σⱼ 1[∃ i : ‖yⱼ − xᵢ‖ ≤ NND_k(xᵢ)]   (fake samples on the real manifold),
    recall    = (1/N) Σᵢ 1[∃ j : ‖xᵢ − yⱼ‖ ≤ NND_k(yⱼ)]   (real samples on the fake manifold).
    """
    real, fake = _flat(real), _flat(fake)
    precision = ball_counts(fake, real, kth_nearest_distance(real, k, chunk_size), chunk_size) > 0
    recall = ball_counts(real, fake, kth_nearest_distance(fake, k, chunk_size), chunk_size) > 0
    return precision.double().mean(), recall.double().mean()


def density_coverage(
    real: Tensor, fake: Tensor, k: int = 5, chunk_size: int = CHUNK_SIZE
) -> tuple[Tensor, Tensor]:
    """Density and coverage (Naeem et al. 2020), from real balls only:

    density  = 1/(kM) Σⱼ Σᵢ 1[‖yⱼ − xᵢ‖ ≤ NND_k(xᵢ)]   (E = 1 when fake ~ real; can exceed 1),
    coverage = (1/N) Σᵢ 1[minⱼ ‖xᵢ − yⱼ‖ ≤ NND_k(xᵢ)]  (real balls holding some fake sample).
    """
    real, fake = _flat(real), _flat(fake)
    radii = kth_nearest_distance(real, k, chunk_size)
    density = ball_counts(fake, real, radii, chunk_size).double().sum() / (k * fake.shape[0])
    coverage = (nearest_distance(real, fake, chunk_size) <= radii).double().mean()
    return density, coverage
