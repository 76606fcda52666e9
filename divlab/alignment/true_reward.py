"""The controlled sentiment task's true reward and its Bradley–Terry preference labels.

The DPO paper's controlled sentiment generation (Rafailov et al. 2023, §6.1), CPU-sized: the true
reward r*(x, y) of a completion y is the VADER compound sentiment of y's text (Hutto & Gilbert
2014), a rule-based score in [−1, 1] whose lexicon ships inside the `vadersentiment` wheel, so it
is deterministic, needs no download, and can be measured for every policy. Preferences are drawn
from the Bradley–Terry model on r*: P(y₁ ≻ y₂) = σ((r*(y₁) − r*(y₂))/temperature).
"""
from collections.abc import Sequence
from functools import cache

import torch
from torch import Tensor

from divlab.validation import check_positive


@cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_reward(texts: Sequence[str]) -> Tensor:
    """VADER compound sentiment of each text, float32 [N] in [−1, 1] (0 for neutral or empty text)."""
    if isinstance(texts, str):
        raise TypeError("sentiment_reward takes a list of strings, not one string")
    analyzer = _analyzer()
    return torch.tensor([analyzer.polarity_scores(text)["compound"] for text in texts], dtype=torch.float32)


def bradley_terry_probability(r1: Tensor, r2: Tensor, temperature: float = 1.0) -> Tensor:
    """P(y₁ ≻ y₂) = σ((r₁ − r₂)/temperature)."""
    return torch.sigmoid((r1 - r2) / check_positive("temperature", temperature))


def bradley_terry_labels(
    r1: Tensor, r2: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Bool [N], True where y₁ ≻ y₂, drawn independently with P = σ((r₁ − r₂)/temperature).

    As temperature → 0 the labels become the deterministic ranking by true reward (ties broken at
    random); large temperatures approach coin flips.
    """
    p = bradley_terry_probability(r1.float(), r2.float(), temperature)
    return torch.rand(p.shape, generator=generator) < p
