"""Aggregate run records into a table: one row per distinct configuration, mean ± std over seeds.

Runs are grouped by their label (family/divergence) and by every config key whose value differs
between runs of that label, except the keys that differ between seeds of one configuration anyway
(`seed`, paths and output directories, logger settings, run ids and tags; see `is_noise`). So a
sweep over backbones, β, learning rates or Optuna trials gives one row per setting, never a mean
over settings presented as a mean over seeds. The keys that tell the rows apart are the table's
`columns`.
"""
import csv
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from divlab.evaluation.feature_nets import FEATURE_SPACES
from divlab.tracking.runs import run_label

# Metrics with a known direction that mean the same for every family (same data, same units), by name
# without split prefix and feature-space suffix. Only these get an arrow and a bold best. Losses,
# each run's own divergence estimate, flags (kl_exact_q), spreads (kid_std), the reference policy's
# reward, KL to the reference (a trade-off, read on the frontier), times and learning rates are reported, never ranked.
DIRECTIONS = {
    **dict.fromkeys(("modes_covered", "high_quality_percent", "precision", "recall", "density", "coverage",
                     "true_reward", "accuracy", "reward_model_accuracy"), "↑"),
    **dict.fromkeys(("nll", "bpd", "bpc", "bits_per_token", "perplexity", "forward_kl", "reverse_kl", "js",
                     "mode_reverse_kl", "class_kl", "fid", "kid"), "↓"),
}
_FEATURE_SUFFIX = re.compile("_(" + "|".join(sorted({*FEATURE_SPACES.values(), "inception"})) + ")$")

# Config keys that differ between seeds of one configuration: never a reason for a separate row.
NOISE_PREFIXES = ("paths.", "hydra.", "run.", "logger.")
NOISE_KEYS = ("ckpt_path", "tags")
MISSING = "–"


def base_name(metric: str) -> str:
    """`test/fid_fmnist` → `fid`: the metric without its split and feature space."""
    return _FEATURE_SUFFIX.sub("", metric.rsplit("/", 1)[-1])


def direction(metric: str) -> str:
    """'↑', '↓', or '' for a metric that is not ranked (see DIRECTIONS)."""
    return DIRECTIONS.get(base_name(metric), "")


def is_ranked(metric: str) -> bool:
    return bool(direction(metric))


def higher_is_better(metric: str) -> bool:
    return direction(metric) == "↑"


def is_noise(key: str) -> bool:
    """Keys that differ between seeds of one configuration: seeds, paths, output dirs, logger and run ids."""
    last = key.rsplit(".", 1)[-1]
    return (key.startswith(NOISE_PREFIXES) or key in NOISE_KEYS or last == "seed"
            or last.endswith("dir") or last == "dirpath")


def flatten(config: dict, prefix: str = "") -> dict:
    """{'model': {'lr': 1}} → {'model.lr': 1}; lists become JSON text (hashable, printable)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return flat


def settings(run: dict) -> dict:
    """The run's config as flat keys, without the noise keys."""
    return {k: v for k, v in flatten(run.get("config") or {}).items() if not is_noise(k)}


def _display(key: str, value) -> str:
    if value is MISSING:
        return MISSING
    if key.endswith("._target_") and isinstance(value, str):
        return value.rsplit(".", 1)[-1]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _column_name(key: str) -> str:
    return key[: -len("._target_")] if key.endswith("._target_") else key


def _display_order(key: str) -> tuple:
    # Class choices first (model.backbone → GPT/S4D/Mamba), then shallow keys; the preset's name last.
    return (key == "experiment_name", not key.endswith("_target_"), key.count("."), key)


def is_ignored(key: str, ignore: tuple[str, ...]) -> bool:
    """Whether a flat key is one of `ignore` or lies under one (a whole section)."""
    return any(key == name or key.startswith(f"{name}.") for name in ignore)


def config_groups(runs: list[dict], ignore: tuple[str, ...] = ()) -> tuple[list[str], list[tuple]]:
    """(columns, group of each run). A group is (label, values of the columns): runs that share it
    differ only in seed and noise keys (and the `ignore` keys or sections). Columns are the fewest differing keys that
    still tell the groups apart (keys implied by others, e.g. each backbone's sizes by the backbone, are left out)."""
    labels = [run_label(run) for run in runs]
    flats = [{k: v for k, v in settings(run).items() if not is_ignored(k, ignore)} for run in runs]
    by_label = defaultdict(list)
    for label, flat in zip(labels, flats):
        by_label[label].append(flat)
    differing = set()
    for members in by_label.values():
        for key in set().union(*members):
            if len({repr(flat.get(key, MISSING)) for flat in members}) > 1:
                differing.add(key)

    def partition(keys) -> set:
        return {(label, *(repr(flat.get(k, MISSING)) for k in keys)) for label, flat in zip(labels, flats)}

    full = len(partition(sorted(differing)))
    # A key some runs lack (added to the configs after they ran) explains less than one every run sets: last.
    absent_somewhere = {key for key in differing if any(key not in flat for flat in flats)}
    columns = []
    for key in sorted(differing, key=lambda k: (k in absent_somewhere, *_display_order(k))):
        if len(partition(columns)) == full:
            break
        if len(partition([*columns, key])) > len(partition(columns)):
            columns.append(key)
    # Rare: keys left out made two configurations look alike; keep them apart by all differing keys.
    if len(set(_groups(labels, flats, columns))) < full:
        columns = sorted(differing, key=_display_order)
    return [_column_name(k) for k in columns], _groups(labels, flats, columns)


def _groups(labels: list[str], flats: list[dict], columns: list[str]) -> list[tuple]:
    """(label, displayed value per column) per run, file paths cut to the part that tells them apart."""
    displayed = []
    for key in columns:
        column = [_display(key, flat.get(key, MISSING)) for flat in flats]
        short = distinct_path_parts(column)
        displayed.append([short.get(value, value) for value in column])
    return [(label, *(column[i] for column in displayed)) for i, label in enumerate(labels)]


def distinct_path_parts(values: list[str]) -> dict[str, str]:
    """{path: the components that tell it from the other paths among `values`, with … for the shared ones},
    e.g. …/anneal/… and …/2026-12-01_12-59-14/… for two runs' <dir>/checkpoints/last.ckpt; {} for under two paths.
    The shortest path keeps at least one component, so different paths stay different."""
    paths = sorted({v for v in values if isinstance(v, str) and "/" in v})
    if len(paths) < 2:
        return {}
    parts = [path.split("/") for path in paths]
    shortest = min(map(len, parts))
    prefix = 0
    while prefix < shortest - 1 and len({p[prefix] for p in parts}) == 1:
        prefix += 1
    suffix = 0
    while prefix + suffix < shortest - 1 and len({p[-1 - suffix] for p in parts}) == 1:
        suffix += 1
    return {path: ("…/" if prefix else "") + "/".join(p[prefix:len(p) - suffix]) + ("/…" if suffix else "")
            for path, p in zip(paths, parts)}


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
    rows: dict  # row name → {metric: Cell}
    counts: dict  # row name → number of runs
    columns: list = field(default_factory=list)  # config keys that tell rows apart
    settings: dict = field(default_factory=dict)  # row name → (label, value per column)

    def best(self, metric: str) -> list[str]:
        """The rows with the best mean of a ranked metric (all of them on a tie); none when every row ties."""
        scored = {row: cells[metric].mean for row, cells in self.rows.items() if metric in cells}
        if len(scored) < 2 or not is_ranked(metric):
            return []
        top = (max if higher_is_better(metric) else min)(scored.values())
        winners = [row for row, value in scored.items() if value == top]
        return [] if len(winners) == len(scored) else winners


def default_metrics(runs: list[dict]) -> list[str]:
    """Every `test/` scalar some run logged, else every `val/` scalar."""
    names = {name for run in runs for name in run.get("metrics", {})}
    for prefix in ("test/", "val/"):
        chosen = sorted(n for n in names if n.startswith(prefix))
        if chosen:
            return chosen
    return sorted(names)


def row_name(group: tuple, columns: list[str]) -> str:
    label, *values = group
    return label if not columns else f"{label} ({', '.join(f'{c}={v}' for c, v in zip(columns, values))})"


def build_table(runs: list[dict], metrics: list[str] | None = None, ignore: tuple[str, ...] = ()) -> Table:
    """Seed means per configuration; `ignore`: config keys (or whole sections) that do not tell configurations apart."""
    metrics = metrics or default_metrics(runs)
    available = {name for run in runs for name in run.get("metrics", {})}
    missing = [m for m in metrics if m not in available]
    if missing:
        raise ValueError(f"no run has metric(s) {', '.join(missing)}; available: {', '.join(sorted(available))}")
    columns, groups = config_groups(runs, ignore)
    rows, counts, row_settings = defaultdict(dict), defaultdict(int), {}
    for group, run in sorted(zip(groups, runs), key=lambda pair: pair[0]):
        name = row_name(group, columns)
        row_settings[name] = group
        counts[name] += 1
        for metric in metrics:
            value = run.get("metrics", {}).get(metric)
            # An infinite divergence is a result (a dropped mode), kept so it cannot flatter the mean.
            if value is not None and not math.isnan(value):
                rows[name].setdefault(metric, Cell([])).values.append(value)
    rows = {name: rows.get(name, {}) for name in counts}
    return Table(metrics, rows, dict(counts), columns, row_settings)


def _format(cell: Cell | None, bold: bool) -> str:
    if cell is None:
        return MISSING
    text = f"{cell.mean:.4g} ± {cell.std:.2g}" if len(cell.values) > 1 else f"{cell.mean:.4g}"
    return f"**{text}**" if bold else text


def to_markdown(table: Table) -> str:
    header = ["run", *table.columns, "n"] + [f"{m} {direction(m)}".rstrip() for m in table.metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {m: table.best(m) for m in table.metrics}
    for name, cells in table.rows.items():
        label, *values = table.settings[name]
        formatted = [_format(cells.get(m), name in best[m]) for m in table.metrics]
        lines.append("| " + " | ".join([label, *values, str(table.counts[name]), *formatted]) + " |")
    return "\n".join(lines) + "\n"


def write_csv(table: Table, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["run", *table.columns, "n"]
            + [f"{m}_{stat}" for m in table.metrics for stat in ("mean", "std")]
            + ["best_in"]
        )
        for name, cells in table.rows.items():
            stats = [v for m in table.metrics for v in ((cells[m].mean, cells[m].std) if m in cells else ("", ""))]
            best_in = ";".join(m for m in table.metrics if name in table.best(m))
            writer.writerow([*table.settings[name], table.counts[name], *stats, best_in])


def run_rows(runs: list[dict]) -> list[str]:
    """The table row each run falls in (its label plus the settings that set it apart)."""
    columns, groups = config_groups(runs)
    return [row_name(group, columns) for group in groups]
