"""The alignment family's reward–KL frontier from run records: one point per run (or per validation of a run),
one curve per method.

A run is on the frontier when it logged both `val/true_reward` and `val/kl_to_ref` (the true reward
of fresh samples and KL(π‖π_ref) per sequence on them); `val/ref_true_reward` is the reference
policy's reward on the same prompts, the frontier's point at KL = 0. By default a run gives its final
point; `every_validation=True` takes every validation in its history (a run validated several times
traces its path away from π_ref, so one run at one β gives points at many KLs).

A method's frontier value at KL x is the best reward it reaches within KL ≤ x (`reward_at_kl`): linear
between measured points, and never below a point at lower KL.
"""
import statistics
from itertools import groupby
from typing import NamedTuple

from divlab.tracking.table import config_groups, row_name

REWARD, KL, REFERENCE = "val/true_reward", "val/kl_to_ref", "val/ref_true_reward"


class FrontierPoint(NamedTuple):
    method: str  # run label, e.g. align/dpo
    beta: float | None  # the KL coefficient: model.beta (DPO) or model.kl_coef (PPO); align_beta in earlier records
    kl: float
    reward: float
    seed: int | None
    step: int | None = None  # the validation's global step (every_validation); None for a run's final point


def run_beta(run: dict) -> float | None:
    config = run.get("config") or {}
    model = config.get("model") or {}
    return next((v for v in (config.get("align_beta"), model.get("beta"), model.get("kl_coef")) if v is not None), None)


BETA_KEYS = ("align_beta", "model.beta", "model.kl_coef")  # what moves a method along its curve


def validation_points(run: dict) -> list[tuple[int, float, float]]:
    """(step, KL, reward) of every validation in a run's history that logged both frontier metrics."""
    history = run.get("history") or {}
    rewards = {int(step): value for step, value in history.get(REWARD, [])}
    return [(int(step), kl, rewards[int(step)]) for step, kl in history.get(KL, []) if int(step) in rewards]


def frontier_points(runs: list[dict], every_validation: bool = False,
                    ignore: tuple[str, ...] = ()) -> list[FrontierPoint]:
    """Points of the runs that have both frontier metrics, sorted by method and KL: each run's final values,
    or with `every_validation` one point per validation in its history (its step recorded).

    A method is the run label plus every other config key that differs between runs of that label, as the
    table's rows (`table.config_groups`) but with β (and the `ignore` keys) left out: DPO on 5,000 pairs and
    DPO on 80,000 are two curves, never one curve's seeds.
    """
    runs = [run for run in runs if {KL, REWARD} <= set(run.get("metrics", {}))]
    columns, groups = config_groups(runs, ignore=(*BETA_KEYS, *ignore))
    points = []
    for group, run in zip(groups, runs):
        method, beta, seed = row_name(group, columns), run_beta(run), run.get("seed")
        if every_validation:
            points += [
                FrontierPoint(method, beta, kl, reward, seed, step) for step, kl, reward in validation_points(run)
            ]
        else:
            points.append(FrontierPoint(method, beta, run["metrics"][KL], run["metrics"][REWARD], seed))
    return sorted(points, key=lambda p: (p.method, p.kl))


def reference_reward(runs: list[dict]) -> float | None:
    """Mean reference reward over the runs that logged it (one value when they share π_ref and prompts)."""
    values = [run["metrics"][REFERENCE] for run in runs if REFERENCE in run.get("metrics", {})]
    return sum(values) / len(values) if values else None


def _beta_text(beta: float | None) -> str:
    return "" if beta is None else f"{beta:g}"


def has_steps(points) -> bool:
    """Whether the points come from every validation (they carry steps) rather than runs' final values."""
    return any(p.step is not None for p in points)


def _step_cell(text, steps: bool, rule: bool = False) -> str:
    """A table's step column (header, rule or value) when the points carry steps; nothing otherwise."""
    return "" if not steps else "---|" if rule else f"{text} | "


def frontier_markdown(points: list[FrontierPoint], reference: float | None) -> str:
    steps = has_steps(points)
    lines = [f"| method | β | {_step_cell('step', steps)}KL(π‖π_ref) (nats/seq) | true reward | seed |",
             f"|---|---|{_step_cell('', steps, rule=True)}---|---|---|"]
    if reference is not None:
        lines.append(f"| reference π_ref | – | {_step_cell(0, steps)}0 | {reference:.4f} | – |")
    lines += [f"| {p.method} | {_beta_text(p.beta)} | {_step_cell(p.step, steps)}{p.kl:.3f} | {p.reward:.4f} | "
              f"{p.seed} |" for p in points]
    return "\n".join(lines) + "\n"


def points_from_markdown(text: str) -> tuple[list[FrontierPoint], float | None]:
    """The points and π_ref's reward back from a table `frontier_markdown` wrote (with steps): the committed
    per-seed record of a frontier whose run records were not kept."""
    points, reference = [], None
    for line in text.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6:
            break
        method, beta, step, kl, reward, seed = cells
        if method.startswith("reference"):
            reference = float(reward)
            continue
        points.append(FrontierPoint(method, None if beta == "–" else float(beta), float(kl), float(reward),
                                    None if seed == "–" else int(seed), int(step)))
    return points, reference


class FrontierMean(NamedTuple):
    """One (method, β, step) point of the frontier over its seeds: means and sample standard deviations."""
    method: str
    beta: float | None
    n: int
    kl: float
    kl_std: float
    reward: float
    reward_std: float
    step: int | None = None


def seed_means(points: list[FrontierPoint]) -> list[FrontierMean]:
    """Average the seeds of each (method, β, step): the frontier's measured points, sorted by method and mean KL."""
    key = lambda p: (p.method, -1.0 if p.beta is None else p.beta, -1 if p.step is None else p.step)  # noqa: E731
    means = []
    for _, group in groupby(sorted(points, key=key), key=key):
        group = list(group)
        kls, rewards = [p.kl for p in group], [p.reward for p in group]
        spread = lambda values: statistics.stdev(values) if len(values) > 1 else 0.0  # noqa: E731
        means.append(FrontierMean(group[0].method, group[0].beta, len(group), statistics.fmean(kls), spread(kls),
                                  statistics.fmean(rewards), spread(rewards), group[0].step))
    return sorted(means, key=lambda m: (m.method, m.kl))


def reward_at_kl(curve: list[FrontierMean], kl: float, reference: float | None = None) -> float | None:
    """A method's frontier at a given KL: the best reward it reaches within KL ≤ `kl`, over its seed-mean points
    (and the reference policy at KL 0, `reward` = `reference`, when known) and the straight line between any two
    of them whose KLs lie either side of `kl`. A straight line is what a mix of the two policies, drawn per
    sequence, reaches or beats: its reward is the mix of theirs and its KL at most the mix of theirs (KL is
    convex). So the frontier is the upper concave envelope of the points, made non-decreasing (`upper_envelope`:
    linear between its corners, flat after the highest); points of several β (or validations of several runs)
    join one curve without a worse point between two better ones pulling it down. None beyond the curve's KL
    range: no extrapolation."""
    xs = ([0.0] if reference is not None else []) + [m.kl for m in curve]
    if not xs or not min(xs) <= kl <= max(xs):
        return None
    corners = _envelope_corners(curve, reference)
    for (x0, y0, _), (x1, y1, _) in zip(corners, corners[1:]):
        if x0 <= kl <= x1:
            return y0 + (y1 - y0) * (kl - x0) / (x1 - x0)
    return corners[-1][1]  # at or beyond the highest corner: its reward is the best within this KL


def best_measured_within(curve: list[FrontierMean], kl: float) -> FrontierMean | None:
    """The measured point of highest reward among a curve's points with KL ≤ `kl` (no mixing of policies: a
    policy that was trained and evaluated); None when no point lies within."""
    within = [m for m in curve if m.kl <= kl]
    return max(within, key=lambda m: m.reward) if within else None


def curves_by_method(means: list[FrontierMean]) -> dict[str, list[FrontierMean]]:
    """Each method's seed-mean points, methods in sorted order."""
    return {method: [m for m in means if m.method == method] for method in sorted({m.method for m in means})}


def upper_envelope(curve: list[FrontierMean], reference: float | None = None) -> list[FrontierMean]:
    """The frontier's corners among the curve's points, in order of KL: the points on the upper concave envelope
    of the points (and of π_ref at KL 0 when `reference` is known) up to the highest of them; `reward_at_kl`
    is linear between consecutive corners, and every other point lies on or under it."""
    return [point for _, _, point in _envelope_corners(curve, reference) if point is not None]


Corner = tuple[float, float, FrontierMean | None]  # (KL, reward, the point; None for π_ref)


def _envelope_corners(curve: list[FrontierMean], reference: float | None) -> list[Corner]:
    """(KL, reward, point) of the upper concave envelope's corners up to its highest, π_ref as (0, reference, None):
    the upper half of Andrew's monotone chain over the points in order of KL, then cut after the maximum."""
    points = ([(0.0, reference, None)] if reference is not None else []) + [(m.kl, m.reward, m) for m in curve]
    hull: list[Corner] = []
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if hull and point[0] == hull[-1][0]:
            continue  # the same KL as a higher point
        while len(hull) >= 2 and _on_or_under(hull[-2], hull[-1], point):
            hull.pop()
        hull.append(point)
    highest = max(range(len(hull)), key=lambda i: hull[i][1])  # the first of equal maxima
    return hull[:highest + 1]


def _on_or_under(a: Corner, b: Corner, c: Corner) -> bool:
    """Whether b lies on or under the chord from a to c (a, b, c in increasing KL)."""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) >= 0


def common_kl(means: list[FrontierMean]) -> float | None:
    """The largest KL every method's curve reaches: where one scalar per method compares them all."""
    methods = {m.method for m in means}
    return min(max(m.kl for m in means if m.method == method) for method in methods) if means else None


def frontier_summary_markdown(means: list[FrontierMean], reference: float | None,
                              at_kls: tuple[float, ...] = ()) -> str:
    """Seed means ± standard deviation per (method, β), then each method's reward at the common KL (and at each
    of `at_kls`), then at the KL of every measured point."""
    steps = has_steps(means)
    lines = [f"| method | β | {_step_cell('step', steps)}seeds | KL(π‖π_ref) (nats/seq) | true reward |",
             f"|---|---|{_step_cell('', steps, rule=True)}---|---|---|"]
    lines += [f"| {m.method} | {_beta_text(m.beta)} | {_step_cell(m.step, steps)}{m.n} | {m.kl:.3f} ± "
              f"{m.kl_std:.3f} | {m.reward:.4f} ± {m.reward_std:.4f} |" for m in means]
    kl = common_kl(means)
    if kl is not None:
        lines += [
            "",
            f"Reward at KL = {kl:.3f} nats/seq (the largest KL every method reaches; the best reward within "
            "that KL, linear between the seed means" + (", from π_ref at KL 0" if reference is not None else "") + "):",
            "",
            "| method | reward at that KL |",
            "|---|---|",
        ]
        for method, curve in curves_by_method(means).items():
            value = reward_at_kl(curve, kl, reference)
            lines.append(f"| {method} | {'–' if value is None else f'{value:.4f}'} |")
        if at_kls:
            lines += ["", *rewards_at_kls_markdown(means, reference, at_kls).splitlines()]
        lines += ["", *rewards_at_every_point_markdown(means, reference).splitlines()]
    return "\n".join(lines) + "\n"


def rewards_at_kls_markdown(means: list[FrontierMean], reference: float | None, kls: tuple[float, ...]) -> str:
    """Each method's frontier (`reward_at_kl`) at the given KLs, one row per KL, and the last method's column as
    each other method's share of it (the oracle's, when the last method is the oracle)."""
    curves = curves_by_method(means)
    methods = list(curves)
    last = methods[-1]
    shares = methods[:-1]
    lines = ["Each method's reward at chosen KLs (the best within that KL; – where a curve does not reach), and as a "
             f"share of {last}'s:", "",
             "| KL | " + " | ".join(methods) + "".join(f" | {m} / {last}" for m in shares) + " |",
             "|---|" + "---|" * (len(methods) + len(shares))]
    for kl in kls:
        values = {method: reward_at_kl(curves[method], kl, reference) for method in methods}
        ratios = [None if values[m] is None or not values[last] else values[m] / values[last] for m in shares]
        lines.append(f"| {kl:g} | " + " | ".join("–" if values[m] is None else f"{values[m]:.4f}" for m in methods)
                     + "".join(" | –" if r is None else f" | {100 * r:.0f} %" for r in ratios) + " |")
    return "\n".join(lines) + "\n"


def rewards_at_every_point_markdown(means: list[FrontierMean], reference: float | None) -> str:
    """Every method's reward at the KL of every measured point (interpolated as `reward_at_kl`; – outside a
    curve's range): whether one frontier lies above another wherever both have points, read along a row."""
    curves = curves_by_method(means)
    methods = list(curves)
    steps = has_steps(means)
    lines = ["Each method's reward at the KL of every measured point (seed means; – where a curve does not reach):",
             "", f"| at the point of | β | {_step_cell('step', steps)}KL | " + " | ".join(methods) + " |",
             "|---|---|---|" + _step_cell('', steps, rule=True) + "---|" * len(methods)]
    for point in means:
        cells = [reward_at_kl(curves[method], point.kl, reference) for method in methods]
        lines.append(f"| {point.method} | {_beta_text(point.beta)} | {_step_cell(point.step, steps)}{point.kl:.3f} | "
                     + " | ".join("–" if c is None else f"{c:.4f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"
