"""Aggregate run records into a table: one row per (family, divergence), mean ± std over seeds."""
import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from divlab.tracking.runs import run_label

HIGHER_IS_BETTER = ("modes", "high_quality", "precision", "recall", "density", "coverage", "accuracy", "reward")


# Each run's own divergence on its own scale (a JS bound, a critic gap, MMD²…): reported, never ranked.
UNRANKED = ("divergence_estimate",)


def is_ranked(metric: str) -> bool:
    return not any(word in metric for word in UNRANKED)


def direction(metric: str) -> str:
    """'↑', '↓', or '' for a metric that is not comparable across runs."""
    return ("↑" if higher_is_better(metric) else "↓") if is_ranked(metric) else ""


def higher_is_better(metric: str) -> bool:
    return any(word in metric for word in HIGHER_IS_BETTER)


@dataclass
class Cell:
    values: list

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single run; nan when a value is infinite)."""
        if len(self.values) < 2:
            return 0.0
        if not all(math.isfinite(v) for v in self.values):
            return math.nan
        return math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (len(self.values) - 1))


@dataclass
class Table:
    metrics: list
    rows: dict  # label → {metric: Cell}
    counts: dict  # label → number of runs

    def best(self, metric: str) -> str | None:
        scored = {label: cells[metric].mean for label, cells in self.rows.items() if metric in cells}
        if not scored or not is_ranked(metric):
            return None
        pick = max if higher_is_better(metric) else min
        return pick(scored, key=scored.get)


def default_metrics(runs: list[dict]) -> list[str]:
    """Every `test/` scalar some run logged, else every `val/` scalar."""
    names = {name for run in runs for name in run.get("metrics", {})}
    for prefix in ("test/", "val/"):
        chosen = sorted(n for n in names if n.startswith(prefix))
        if chosen:
            return chosen
    return sorted(names)


def build_table(runs: list[dict], metrics: list[str] | None = None) -> Table:
    metrics = metrics or default_metrics(runs)
    available = {name for run in runs for name in run.get("metrics", {})}
    missing = [m for m in metrics if m not in available]
    if missing:
        raise ValueError(f"no run has metric(s) {', '.join(missing)}; available: {', '.join(sorted(available))}")
    rows, counts = defaultdict(dict), defaultdict(int)
    for run in sorted(runs, key=run_label):
        label = run_label(run)
        counts[label] += 1
        for metric in metrics:
            value = run.get("metrics", {}).get(metric)
            # An infinite divergence is a result (a dropped mode), kept so it cannot flatter the mean.
            if value is not None and not math.isnan(value):
                rows[label].setdefault(metric, Cell([])).values.append(value)
    return Table(metrics, dict(rows), dict(counts))


def _format(cell: Cell | None, bold: bool) -> str:
    if cell is None:
        return "–"
    text = f"{cell.mean:.4g} ± {cell.std:.2g}" if len(cell.values) > 1 else f"{cell.mean:.4g}"
    return f"**{text}**" if bold else text


def to_markdown(table: Table) -> str:
    arrows = [f"{m} {direction(m)}".rstrip() for m in table.metrics]
    lines = ["| run | n | " + " | ".join(arrows) + " |", "|---|---|" + "---|" * len(table.metrics)]
    best = {m: table.best(m) for m in table.metrics}
    for label, cells in table.rows.items():
        formatted = [_format(cells.get(m), best[m] == label) for m in table.metrics]
        lines.append(f"| {label} | {table.counts[label]} | " + " | ".join(formatted) + " |")
    return "\n".join(lines) + "\n"


def write_csv(table: Table, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "n"] + [f"{m}_{stat}" for m in table.metrics for stat in ("mean", "std")] + ["best_in"])
        for label, cells in table.rows.items():
            stats = [v for m in table.metrics for v in ((cells[m].mean, cells[m].std) if m in cells else ("", ""))]
            best_in = ";".join(m for m in table.metrics if table.best(m) == label)
            writer.writerow([label, table.counts[label], *stats, best_in])
