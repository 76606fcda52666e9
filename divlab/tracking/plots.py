"""Comparison plots from run records: metric bars, overlaid curves, a sample panel, quality vs coverage."""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from divlab.tracking.runs import run_label  # noqa: E402
from divlab.tracking.table import Table, higher_is_better, is_ranked  # noqa: E402

CURVES = ("train/loss", "train/divergence_estimate", "val/loss", "val/nll")
# (quality, coverage) metric-name fragments, in order of preference.
QUALITY_COVERAGE = (("precision", "recall"), ("high_quality", "modes_covered"))


def _colours(labels) -> dict:
    cmap = plt.get_cmap("tab20")
    return {label: cmap(i % 20) for i, label in enumerate(sorted(set(labels)))}


def _grid(n: int, size: float = 3.2):
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def plot_metric_bars(table: Table, path: Path) -> dict:
    """One panel per metric, one bar (mean, ± std error bar) per row; returns bars per metric."""
    labels = list(table.rows)
    colours = _colours(labels)
    fig, axes = _grid(len(table.metrics))
    bars = {}
    for ax, metric in zip(axes, table.metrics):
        present = [label for label in labels if metric in table.rows[label]]
        means = [table.rows[label][metric].mean for label in present]
        stds = [table.rows[label][metric].std for label in present]
        ax.bar(range(len(present)), means, yerr=stds, color=[colours[label] for label in present], capsize=3)
        ax.set_xticks(range(len(present)), present, rotation=60, ha="right", fontsize=7)
        verdict = ("higher" if higher_is_better(metric) else "lower") + " is better" if is_ranked(metric) else "per divergence"
        ax.set_title(f"{metric} ({verdict})", fontsize=8)
        bars[metric] = len(present)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return bars


def plot_curves(runs: list[dict], path: Path) -> list[str]:
    """Training curves of every run overlaid, one panel per metric that has a history."""
    metrics = [m for m in CURVES if any(m in run.get("history", {}) for run in runs)]
    metrics += sorted({m for run in runs for m in run.get("history", {})} - set(metrics) - {"epoch"})[: max(0, 4 - len(metrics))]
    if not metrics:
        return []
    colours = _colours(run_label(run) for run in runs)
    fig, axes = _grid(len(metrics), size=3.6)
    for ax, metric in zip(axes, metrics):
        seen = set()
        for run in runs:
            series = run.get("history", {}).get(metric)
            if not series:
                continue
            label = run_label(run)
            steps, values = zip(*series)
            ax.plot(steps, values, color=colours[label], alpha=0.8, lw=1, label=None if label in seen else label)
            seen.add(label)
        ax.set_title(metric, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return metrics


def last_sample_image(run: dict) -> Path | None:
    images = sorted(Path(run["run_dir"]).glob("samples/*.png"))
    return images[-1] if images else None


def plot_sample_panel(runs: list[dict], path: Path) -> int:
    """One tile per run: its last sample image, titled by run label and seed; returns the tile count."""
    tiles = [(run, last_sample_image(run)) for run in sorted(runs, key=run_label)]
    tiles = [(run, image) for run, image in tiles if image is not None]
    if not tiles:
        return 0
    fig, axes = _grid(len(tiles), size=2.6)
    for ax, (run, image) in zip(axes, tiles):
        ax.imshow(plt.imread(image))
        ax.set_title(f"{run_label(run)} (seed {run.get('seed')})", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(tiles)


def _find_metric(runs: list[dict], fragment: str) -> str | None:
    names = sorted({m for run in runs for m in run.get("metrics", {}) if fragment in m})
    return next((n for n in names if n.startswith("test/")), names[0] if names else None)


def plot_quality_vs_coverage(runs: list[dict], path: Path) -> tuple[str, str] | None:
    """Each run as a point: coverage (recall or modes covered) against quality (precision or high-quality %)."""
    for quality_key, coverage_key in QUALITY_COVERAGE:
        quality, coverage = _find_metric(runs, quality_key), _find_metric(runs, coverage_key)
        if quality and coverage:
            break
    else:
        return None
    colours = _colours(run_label(run) for run in runs)
    fig, ax = plt.subplots(figsize=(5, 4))
    seen = set()
    for run in runs:
        metrics = run.get("metrics", {})
        if quality in metrics and coverage in metrics:
            label = run_label(run)
            ax.scatter(metrics[coverage], metrics[quality], color=colours[label], label=None if label in seen else label)
            seen.add(label)
    ax.set_xlabel(coverage)
    ax.set_ylabel(quality)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return quality, coverage


def plot_reward_kl_frontier(runs: list[dict], path: Path) -> dict | None:
    """True reward against KL(π‖π_ref), one curve per method (points by increasing KL, labelled β), the
    reference policy as a star at KL = 0: the DPO paper's Figure 2. None (nothing drawn) without such runs."""
    from divlab.tracking.frontier import frontier_points, reference_reward

    points = frontier_points(runs)
    if not points:
        return None
    methods = sorted({p.method for p in points})
    colours = _colours(methods)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for method in methods:
        curve = [p for p in points if p.method == method]
        ax.plot([p.kl for p in curve], [p.reward for p in curve], marker="o", color=colours[method], label=method)
        for p in curve:
            if p.beta is not None:
                ax.annotate(f"β={p.beta:g}", (p.kl, p.reward), fontsize=6, xytext=(3, 3), textcoords="offset points")
    reference = reference_reward(runs)
    if reference is not None:
        ax.scatter([0.0], [reference], marker="*", s=160, color="black", zorder=3, label="reference π_ref")
    ax.set_xlabel("KL(π ‖ π_ref) per sequence (nats)")
    ax.set_ylabel("true reward of samples")
    ax.set_title("reward–KL frontier", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {method: sum(p.method == method for p in points) for method in methods}
