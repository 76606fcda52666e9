"""Evaluation math: sample-quality metrics and divergences between data and model samples.

Pure tensor functions (no Lightning); the callbacks in `divlab.callbacks` call them and log.
"""
from divlab.evaluation.frechet import (
    FrozenFeatures,
    feature_fid_metric,
    feature_kid_metric,
    feature_statistics,
    frechet_distance,
    frechet_distance_gaussians,
    kernel_inception_distance,
    kid_subset_size,
    mmd2_unbiased,
)
from divlab.evaluation.manifold import density_coverage, precision_recall
from divlab.evaluation.toy import (
    ModeScores,
    forward_kl,
    gaussian_kde,
    gaussian_log_sums,
    jensen_shannon,
    kde_log_prob,
    loo_bandwidth,
    mode_scores,
    reverse_kl,
    scott_bandwidth,
    toy_divergences,
)

__all__ = [
    "FrozenFeatures",
    "ModeScores",
    "density_coverage",
    "feature_fid_metric",
    "feature_kid_metric",
    "feature_statistics",
    "forward_kl",
    "frechet_distance",
    "frechet_distance_gaussians",
    "gaussian_kde",
    "gaussian_log_sums",
    "jensen_shannon",
    "kde_log_prob",
    "kernel_inception_distance",
    "kid_subset_size",
    "loo_bandwidth",
    "mmd2_unbiased",
    "mode_scores",
    "precision_recall",
    "reverse_kl",
    "scott_bandwidth",
    "toy_divergences",
]
