"""Published results on divlab's toy protocols, quoted with their source and their statistic.

PacGAN (Lin, Khetan, Fanti, Oh; NeurIPS 2018), Table 1: the ring of 8 and the grid of 25 Gaussians of VEEGAN's
protocol, 2,500 samples, a sample is high quality within 3σ of a mode, reverse KL between the samples' mode
histogram and the uniform one; "averaged over 10 trials shown with the standard error"
(the table's caption), 400k generator steps. Read from the table image in the authors' repository
(github.com/fjxmlzn/PacGAN, synthetic_data_experiments/results/Table1.png, commit 190853e).

VEEGAN (Srivastava, Valkov, Russell, Gutmann, Sutton; NeurIPS 2017), Table 1: the same protocol; its table gives
means without a spread, so no verdict is drawn against its rows.
"""
from typing import NamedTuple

from divlab.tracking.verdict import Estimate


class PublishedRow(NamedTuple):
    method: str
    source: str
    modes: Estimate
    high_quality_percent: Estimate
    mode_reverse_kl: Estimate | None


def _se10(mean: float, se: float) -> Estimate:
    return Estimate(mean, se, 10)


def _mean_only(mean: float) -> Estimate:
    return Estimate(mean, None, None)


PACGAN = "PacGAN Table 1 (mean ± SE, 10 trials)"
VEEGAN = "VEEGAN Table 1 (mean; no spread reported)"

TOY_TABLES = {
    "ring8": (
        PublishedRow("GAN", PACGAN, _se10(6.3, 0.5), _se10(98.2, 0.2), _se10(0.45, 0.09)),
        PublishedRow("ALI", PACGAN, _se10(6.6, 0.3), _se10(97.6, 0.4), _se10(0.36, 0.04)),
        PublishedRow("PacGAN2", PACGAN, _se10(7.9, 0.1), _se10(95.6, 2.0), _se10(0.07, 0.03)),
        PublishedRow("PacGAN3", PACGAN, _se10(7.8, 0.1), _se10(97.7, 0.3), _se10(0.10, 0.02)),
        PublishedRow("PacGAN4", PACGAN, _se10(7.8, 0.1), _se10(95.9, 1.4), _se10(0.07, 0.02)),
        PublishedRow("Unrolled GAN", VEEGAN, _mean_only(7.6), _mean_only(35.6), None),
        PublishedRow("VEEGAN", VEEGAN, _mean_only(8.0), _mean_only(52.9), None),
    ),
    "grid25": (
        PublishedRow("GAN", PACGAN, _se10(17.3, 0.8), _se10(94.8, 0.7), _se10(0.70, 0.07)),
        PublishedRow("ALI", PACGAN, _se10(24.1, 0.4), _se10(95.7, 0.6), _se10(0.14, 0.03)),
        PublishedRow("PacGAN2", PACGAN, _se10(23.8, 0.7), _se10(91.3, 0.8), _se10(0.13, 0.04)),
        PublishedRow("PacGAN3", PACGAN, _se10(24.6, 0.4), _se10(94.2, 0.4), _se10(0.06, 0.02)),
        PublishedRow("PacGAN4", PACGAN, _se10(24.8, 0.2), _se10(93.6, 0.6), _se10(0.04, 0.01)),
        PublishedRow("Unrolled GAN", VEEGAN, _mean_only(23.6), _mean_only(16.0), None),
        PublishedRow("VEEGAN", VEEGAN, _mean_only(24.6), _mean_only(40.0), None),
    ),
}
