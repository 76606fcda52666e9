"""How a results table words a comparison: the two-standard-error rule.

An estimate is a mean with its standard error (SE = sample std / √n over seeds or trials). Two estimates a and
b differ when |a − b| > 2 · SE(a − b), with SE(a − b) = √(SE(a)² + SE(b)²) for independent estimates; then the
better one (by the metric's direction) is "better", the other "worse". Otherwise they are "on par": the data do
not tell them apart. With an unknown spread on either side (one seed, or a published mean without its spread) no
verdict is given ("no spread"), never a silent "better".

The rule is a 2-σ Wald-style check, close to a two-sided test at 5 % for normal means; at 3–5 seeds it is
lenient (a t-test would ask for more), which the pages say wherever a verdict rests on few seeds.
"""
import math
import statistics
from typing import NamedTuple

BETTER, WORSE, ON_PAR, NO_SPREAD = "better", "worse", "on par", "no spread"


class Estimate(NamedTuple):
    mean: float
    se: float | None  # None: spread unknown
    n: int | None

    def text(self) -> str:
        """`mean ± SE`, the SE at two significant digits and the mean to the same decimal place (the mean alone,
        at four significant digits, when the spread is unknown)."""
        if self.se is None or not math.isfinite(self.se):
            return f"{self.mean:.4g}"
        if self.se == 0:
            return f"{self.mean:.4g} ± 0"
        decimals = max(0, 1 - math.floor(math.log10(self.se)))
        return f"{self.mean:.{decimals}f} ± {self.se:.{decimals}f}"


def estimate(values: list[float]) -> Estimate:
    """Mean and standard error of the mean of independent values (seeds); SE unknown for a single value."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to estimate from")
    if len(values) == 1:
        return Estimate(values[0], None, 1)
    return Estimate(statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values)), len(values))


def from_std(mean: float, std: float | None, n: int) -> Estimate:
    """An estimate from a reported mean, sample standard deviation and n (SE = std / √n)."""
    if std is None or n < 2 or not math.isfinite(std):
        return Estimate(mean, None, n)
    return Estimate(mean, std / math.sqrt(n), n)


def difference_se(a: Estimate, b: Estimate) -> float | None:
    """SE of a − b for independent estimates; None when either spread is unknown."""
    if a.se is None or b.se is None:
        return None
    return math.hypot(a.se, b.se)


def verdict(a: Estimate, b: Estimate, higher_is_better: bool = True) -> str:
    """`a` against `b`: "better"/"worse" beyond two SEs of the difference, else "on par"; "no spread" when a
    spread is unknown."""
    se = difference_se(a, b)
    if se is None:
        return NO_SPREAD
    difference = a.mean - b.mean
    if abs(difference) <= 2 * se * (1 + 1e-9):  # exactly two SEs apart is not beyond them (8 − 7.8 ≠ 0.2 in floats)
        return ON_PAR
    return BETTER if (difference > 0) == higher_is_better else WORSE



MET, MISSED, WITHIN, NO_VERDICT = "met beyond two SEs", "missed beyond two SEs", "within two SEs", "no spread"


def against_goal(e: Estimate, goal: float, at_least: bool = True) -> str:
    """An estimate against a fixed goal (`at_least`: the mean should reach it; else stay at or below it): met or
    missed beyond two SEs, else within two SEs of it (the data do not say); "no spread" when its spread is
    unknown."""
    if e.se is None:
        return NO_VERDICT
    margin = (e.mean - goal) if at_least else (goal - e.mean)
    if abs(margin) <= 2 * e.se * (1 + 1e-9):
        return WITHIN
    return MET if margin > 0 else MISSED


def on_par_with_best(estimates: dict, higher_is_better: bool = True) -> set:
    """The keys of `estimates` (key → Estimate) whose estimate is the best mean or on par with it by the two-SE
    rule; none when fewer than two are finite."""
    scored = {key: e for key, e in estimates.items() if math.isfinite(e.mean)}
    if len(scored) < 2:
        return set()
    best = (max if higher_is_better else min)(scored, key=lambda key: scored[key].mean)
    return {key for key, e in scored.items() if key == best or verdict(e, scored[best], higher_is_better) == ON_PAR}
