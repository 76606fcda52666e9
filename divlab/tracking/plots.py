"""Comparison plots from run records: metric bars, overlaid curves, a sample panel, quality vs coverage.

Runs are coloured by their table row (label plus the settings that set it apart, see
`divlab.tracking.table`), so seeds of one configuration share a colour and a legend entry.
"""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from divlab.tracking.published import TOY_TABLES  # noqa: E402
from divlab.tracking.runs import run_label  # noqa: E402
from divlab.tracking.table import Cell, Table, direction, run_rows  # noqa: E402

CURVES = ("train/loss", "train/divergence_estimate", "train/sample_grad_norm", "val/loss", "val/nll")
LOG_SCALE_CURVES = (
    "grad_norm",
)  # magnitudes over decades: a stalled generator's push is orders below a training one's
MAX_CURVE_PANELS = 6
# Logged scalars that are bookkeeping, not training curves.
NOT_CURVES = ("epoch", "lr-", "time/", "step")
# (quality, coverage) metric-name fragments, in order of preference.
QUALITY_COVERAGE = (("precision", "recall"), ("high_quality", "modes_covered"))

def _colours(labels) -> dict:
    cmap = plt.get_cmap("tab20" if len(set(labels)) > 10 else "tab10")
    return {label: cmap(i % cmap.N) for i, label in enumerate(sorted(set(labels)))}


def _grid(n: int, size: float = 3.2, max_cols: int = 4):
    """n panels and no empty ones: the unused cells of the last row are removed."""
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.remove()
    return fig, list(axes.flat[:n])


def _shared_legend(fig, handles: dict) -> None:
    """One legend for the whole figure, outside the panels, one entry per table row."""
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7, frameon=False)


def plot_metric_bars(table: Table, path: Path) -> dict:
    """One panel per metric, one bar (mean, ± std error bar) per row; returns bars per metric."""
    names = list(table.rows)
    colours = _colours(names)
    fig, axes = _grid(len(table.metrics))
    bars = {}
    for ax, metric in zip(axes, table.metrics):
        present = [name for name in names if metric in table.rows[name]]
        means = [table.rows[name][metric].mean for name in present]
        stds = [table.rows[name][metric].std for name in present]
        finite = [math.isfinite(m) for m in means]
        ax.bar(range(len(present)), [m if f else 0.0 for m, f in zip(means, finite)],
               yerr=[s if f and math.isfinite(s) else 0.0 for s, f in zip(stds, finite)],
               color=[colours[name] for name in present], capsize=3)
        for i, (mean, is_finite) in enumerate(zip(means, finite)):
            if not is_finite:  # an infinite divergence (a dropped mode) has no bar: say so
                ax.annotate(f"{mean}", (i, 0), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(present)), present, rotation=60, ha="right", fontsize=7)
        arrow = direction(metric)
        verdict = {"↑": "higher is better", "↓": "lower is better"}.get(arrow, "not ranked")
        ax.set_title(f"{metric} ({verdict})", fontsize=8)
        bars[metric] = len(present)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return bars


def steps_per_epoch(run: dict) -> float | None:
    """Optimizer steps per epoch: the step of the run's first validation (at the end of epoch
    `check_val_every_n_epoch`), or None when validation is not at epoch ends or never ran."""
    trainer = (run.get("config") or {}).get("trainer") or {}
    if trainer.get("val_check_interval") not in (None, 1.0):
        return None
    firsts = [series[0][0] for name, series in run.get("history", {}).items() if name.startswith("val/") and series]
    if not firsts or min(firsts) <= 0:
        return None
    return min(firsts) / (trainer.get("check_val_every_n_epoch") or 1)


def epochs(run: dict, steps) -> list[float] | None:
    """Global steps as epochs (passes over the training data), or None when unknown (see steps_per_epoch).

    Global steps count optimizer steps, so a GAN (a critic and a generator step per batch) takes
    twice a VAE's steps for the same data: epochs, unlike steps, put families side by side."""
    per_epoch = steps_per_epoch(run)
    return None if per_epoch is None else [step / per_epoch for step in steps]


def curve_metrics(runs: list[dict]) -> list[str]:
    """The preferred CURVES any run logged, then other logged scalars, at most MAX_CURVE_PANELS; a
    metric is a curve when some run has at least two points of it (one point draws no line)."""
    def is_curve(metric):
        return any(len(run.get("history", {}).get(metric) or []) >= 2 for run in runs)

    others = sorted({m for run in runs for m in run.get("history", {})} - set(CURVES))
    others = [m for m in others if not m.startswith(NOT_CURVES)]
    return [m for m in (*CURVES, *others) if is_curve(m)][:MAX_CURVE_PANELS]


def plot_curves(runs: list[dict], path: Path) -> list[str]:
    """Training curves of every run overlaid, one panel per metric, against epochs (steps when a run
    has no logged epoch); one legend entry per table row."""
    metrics = curve_metrics(runs)
    if not metrics:
        return []
    names = run_rows(runs)
    colours = _colours(names)
    in_epochs = all(epochs(run, [1]) is not None for run in runs)
    fig, axes = _grid(len(metrics), size=3.4, max_cols=3)
    handles = {}
    for ax, metric in zip(axes, metrics):
        for run, name in zip(runs, names):
            series = run.get("history", {}).get(metric)
            if not series:
                continue
            steps, values = zip(*series)
            x = epochs(run, steps) if in_epochs else steps
            (line,) = ax.plot(
                x, values, color=colours[name], alpha=0.8, lw=1, marker="o" if len(x) < 12 else None, ms=3
            )
            handles.setdefault(name, line)
        if metric.endswith(LOG_SCALE_CURVES):  # symmetric log: a push of exactly 0 stays on the plot
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_title(metric, fontsize=8)
        ax.set_xlabel("epochs (passes over the training data)" if in_epochs else "optimizer steps", fontsize=7)
        ax.tick_params(labelsize=7)
    _shared_legend(fig, dict(sorted(handles.items())))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return metrics


def last_sample_image(run: dict) -> Path | None:
    """The run's last sample picture: `samples/`, else the last toy-metrics scatter (the 2-D presets plot
    there only), the test one when a step has both."""
    run_dir = Path(run["run_dir"])
    images = sorted(run_dir.glob("samples/*.png"))
    if images:
        return images[-1]
    scatters = [path for path in run_dir.glob("toy_metrics/*_step*.png") if "_modes_" not in path.name]
    return max(scatters, key=lambda path: (path.stem.rsplit("_step", 1)[1], path.name.startswith("test")), default=None)


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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(tiles)


def _find_metric(runs: list[dict], fragment: str) -> str | None:
    names = sorted({m for run in runs for m in run.get("metrics", {}) if fragment in m})
    return next((n for n in names if n.startswith("test/")), names[0] if names else None)


def plot_quality_vs_coverage(runs: list[dict], path: Path) -> dict | None:
    """Coverage (recall or modes covered) against quality (precision or high-quality %): one point per
    table row, mean ± std over its seeds as error bars, and the published anchors of the same toy data.
    Returns {"quality", "coverage", "points": {row: (coverage Cell, quality Cell)}, "anchors": [...]}."""
    for quality_key, coverage_key in QUALITY_COVERAGE:
        quality, coverage = _find_metric(runs, quality_key), _find_metric(runs, coverage_key)
        if quality and coverage:
            break
    else:
        return None
    points = {}
    for run, name in zip(runs, run_rows(runs)):
        metrics = run.get("metrics", {})
        if quality in metrics and coverage in metrics:
            x, y = points.setdefault(name, (Cell([]), Cell([])))
            x.values.append(metrics[coverage])
            y.values.append(metrics[quality])
    colours = _colours(points)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    for name, (x, y) in sorted(points.items()):
        ax.errorbar(x.mean, y.mean, xerr=x.std, yerr=y.std, fmt="o", color=colours[name], capsize=3,
                    label=f"{name} (n={len(x.values)})")
    data = {run.get("data") for run in runs}
    anchors = TOY_TABLES.get(data.pop()) if len(data) == 1 and coverage_key == "modes_covered" else None
    for row in anchors or ():
        point = (row.modes.mean, row.high_quality_percent.mean)
        ax.scatter(*point, marker="*", s=110, facecolor="none", edgecolor="black", zorder=3)
        ax.annotate(f"{row.method} ({row.source.split(' (')[0]})", point, fontsize=6, xytext=(4, -3),
                    textcoords="offset points")
    if anchors:
        ax.scatter(
            [], [], marker="*", s=110, facecolor="none", edgecolor="black", label="published (PacGAN / VEEGAN Table 1)"
        )
    ax.set_xlabel(f"{coverage} (mean ± std over seeds)")
    ax.set_ylabel(quality)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {
        "quality": quality,
        "coverage": coverage,
        "points": points,
        "anchors": [row.method for row in anchors or ()],
    }


def plot_reward_kl_frontier(means: list, reference: float | None, path: Path) -> dict | None:
    """True reward against KL(π‖π_ref) of the frontier's seed means (`frontier.seed_means`): per method its
    (method, β[, step]) points with ±1 std error bars in both directions, its frontier (the upper concave envelope
    `reward_at_kl` reads, from the reference policy, a star at KL = 0) as a solid line, points the envelope passes
    over faded, and for points from every validation each β's path dotted: the DPO paper's Figure 2. Returns the
    runs' points per method; None (nothing drawn) without points."""
    from divlab.tracking.frontier import curves_by_method, has_steps, upper_envelope

    if not means:
        return None
    every_validation = has_steps(means)
    curves = curves_by_method(means)
    colours = _colours(list(curves))
    # the legend goes under the axes, one line per method, so long method names never squeeze the plot
    fig, ax = plt.subplots(figsize=(7, 4.4 + 0.16 * (len(curves) + 1)), layout="constrained")
    for method, curve in curves.items():
        envelope = upper_envelope(curve, reference)
        for m in curve:
            se = math.sqrt(m.n) if m.n > 1 else 1.0
            ax.errorbar([m.kl], [m.reward], xerr=[m.kl_std / se], yerr=[m.reward_std / se], marker="o", markersize=4,
                        capsize=2, color=colours[method], alpha=1.0 if m in envelope else 0.35)
        start = [(0.0, reference)] if reference is not None else []
        line = start + [(m.kl, m.reward) for m in envelope]
        ax.plot(*zip(*line), color=colours[method], label=f"{method}: concave envelope (mixtures of measured policies)")
        betas = sorted({m.beta for m in curve if m.beta is not None})
        for beta in betas:
            path_points = sorted((m for m in curve if m.beta == beta), key=lambda m: -1 if m.step is None else m.step)
            if every_validation and len(path_points) > 1:
                ax.plot(*zip(*(start + [(m.kl, m.reward) for m in path_points])), ":", color=colours[method],
                        linewidth=0.8)
            last = path_points[-1]
            ax.annotate(f"β={beta:g}", (last.kl, last.reward), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if reference is not None:
        ax.scatter([0.0], [reference], marker="*", s=160, color="black", zorder=3, label="reference π_ref")
    ax.set_xlabel("KL(π ‖ π_ref) per sequence (nats)")
    ax.set_ylabel("true reward of samples (points: seed mean ± SE)")
    ax.set_title("reward–KL frontier" + (" (every validation; dotted: one β's path)" if every_validation else ""),
                 fontsize=9)
    fig.legend(loc="outside lower center", fontsize=7, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {method: sum(m.n for m in curve) for method, curve in curves.items()}
