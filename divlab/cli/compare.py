"""Compare finished runs: a table (Markdown + CSV) and plots, from run records or from W&B.

    divlab compare RUN_DIR [RUN_DIR ...] --out OUT_DIR [--metrics test/nll ...] [--ignore-keys KEY ...]
                   [--frontier-points final|every-validation] [--frontier-at-kl KL ...] [--log-wandb]
    divlab compare --wandb-project divlab --group study_ring8 --out OUT_DIR      (online)

(`python compare.py ...` in a checkout.)
A RUN_DIR is one run's output directory or a multirun directory holding many. A sweep's folder that lacks jobs
(a study stopped part-way, or run in pieces) is compared on what it holds, and what it lacks is printed and
written to OUT_DIR/progress.md (`divlab.tracking.sweep_progress`).
"""
import argparse
import sys
from pathlib import Path

from divlab.tracking.frontier import (
    frontier_markdown,
    frontier_points,
    frontier_summary_markdown,
    reference_reward,
    seed_means,
)
from divlab.tracking.plots import (
    plot_curves,
    plot_metric_bars,
    plot_quality_vs_coverage,
    plot_reward_kl_frontier,
    plot_sample_panel,
)
from divlab.tracking.runs import RunSelectionError, load_runs, run_label  # noqa: F401 (re-exported for tests)
from divlab.tracking.sweep_progress import is_sweep, progress_report, sweep_jobs
from divlab.tracking.table import build_table, flatten, is_ignored, to_markdown, write_csv


def compare(runs: list[dict], out: Path, metrics: list[str] | None = None, ignore_keys: tuple[str, ...] = (),
            every_validation: bool = False, frontier_at_kls: tuple[float, ...] = ()) -> dict:
    """Write table.md, table.csv and the PNG plots under `out`; returns what was written. `ignore_keys`: dotted
    config keys that do not tell configurations apart (ValueError for one no run has); `every_validation`: the
    reward–KL frontier takes every validation of a run, not only its last; `frontier_at_kls`: KLs at which the
    frontier summary reads every method's reward."""
    check_config_keys(runs, ignore_keys)
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(runs, metrics, ignore_keys)
    (out / "table.md").write_text(to_markdown(table))
    write_csv(table, out / "table.csv")
    points = frontier_points(runs, every_validation, ignore_keys)
    means, reference = seed_means(points), reference_reward(runs)
    if points:  # alignment runs: one row per run (per β), which the seed-averaged table would merge
        (out / "frontier.md").write_text(frontier_markdown(points, reference))
        summary = frontier_summary_markdown(means, reference, frontier_at_kls)
        (out / "frontier_summary.md").write_text(summary)
        print(summary)
    return {
        "table": table,
        "bars": plot_metric_bars(table, out / "metrics.png"),
        "curves": plot_curves(runs, out / "curves.png"),
        "tiles": plot_sample_panel(runs, out / "samples.png"),
        "quality_vs_coverage": plot_quality_vs_coverage(runs, out / "quality_vs_coverage.png"),
        "frontier": plot_reward_kl_frontier(means, reference, out / "frontier.png"),
    }


def check_config_keys(runs: list[dict], keys) -> None:
    """ValueError naming a dotted config key that no run's config has (a typo would otherwise ignore nothing)."""
    present = set().union(*(flatten(run.get("config") or {}) for run in runs)) if runs else set()
    for key in keys:
        if not any(is_ignored(name, (key,)) for name in present):
            raise ValueError(f"--ignore-keys {key}: no run's config has it")


def runs_from_wandb(project: str, group: str) -> list[dict]:
    """Run-record-shaped dicts for the finished runs of a W&B group (needs network and an API key)."""
    import wandb

    records = []
    for run in wandb.Api().runs(project, filters={"group": group, "state": "finished"}):
        config = dict(run.config)
        history = {}
        for row in run.scan_history():
            for key, value in row.items():
                if isinstance(value, (int, float)) and not key.startswith("_"):
                    history.setdefault(key, []).append([row.get("_step", 0), value])
        records.append(
            {
                "family": (config.get("run") or {}).get("family")
                or next((t.split(":", 1)[1] for t in run.tags if t.startswith("family:")), None),
                "divergence": next((t.split(":", 1)[1] for t in run.tags if t.startswith("divergence:")), None),
                "data": next((t.split(":", 1)[1] for t in run.tags if t.startswith("data:")), None),
                "seed": config.get("seed"),
                "status": "completed",
                "metrics": {k: v for k, v in run.summary.items() if isinstance(v, (int, float))},
                "history": history,
                "run_dir": run.dir,
            }
        )
    return records


def log_to_wandb(written: dict, out: Path, group: str | None) -> None:
    """Log the table and plots as a W&B run of job type `comparison` in the study's group."""
    import wandb

    from divlab.tracking.wandb_logger import resolve_mode

    table = written["table"]
    with wandb.init(project="divlab", group=group, job_type="comparison", dir=str(out), mode=resolve_mode(None)) as run:
        columns = ["run", *table.columns, "n"] + table.metrics
        rows = [
            [*table.settings[name], table.counts[name]] + [cells[m].mean if m in cells else None for m in table.metrics]
            for name, cells in table.rows.items()
        ]
        run.log({"comparison/table": wandb.Table(columns=columns, data=rows)})
        for png in sorted(out.glob("*.png")):
            run.log({f"comparison/{png.stem}": wandb.Image(str(png))})


def report_sweep_progress(paths: list[Path], out: Path) -> None:
    """Print, and write to `out`/progress.md, which jobs of each sweep folder among `paths` are not completed."""
    reports = [f"{path}: {progress_report(sweep_jobs(path))}" for path in paths if is_sweep(path)]
    if reports:
        out.mkdir(parents=True, exist_ok=True)
        (out / "progress.md").write_text("\n".join(reports))
        print("\n".join(reports))


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", nargs="+")
    parser.add_argument("--wandb-project")
    parser.add_argument("--group")
    parser.add_argument(
        "--log-wandb", action="store_true", help="also log table and plots to W&B (offline without network)"
    )
    parser.add_argument("--ignore-keys", nargs="+", default=[], metavar="KEY",
                        help="config keys (dotted) that do not tell configurations apart, e.g. one older runs lack")
    parser.add_argument("--frontier-points", choices=("final", "every-validation"), default="final",
                        help="reward–KL frontier: each run's final point, or one per validation (its path from π_ref)")
    parser.add_argument("--frontier-at-kl", nargs="+", type=float, default=[], metavar="KL",
                        help="also read every method's frontier at these KLs (nats per sequence)")
    args = parser.parse_args(argv)
    try:
        if args.wandb_project:
            runs = runs_from_wandb(args.wandb_project, args.group)
        elif args.run_dirs:
            report_sweep_progress(args.run_dirs, args.out)
            runs = load_runs(args.run_dirs)
        else:
            parser.error("pass RUN_DIR(s) or --wandb-project P --group G")
        written = compare(runs, args.out, args.metrics, tuple(args.ignore_keys),
                          args.frontier_points == "every-validation", tuple(args.frontier_at_kl))
    except (RunSelectionError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if args.log_wandb:
        log_to_wandb(written, args.out, args.group or runs[0].get("config", {}).get("run", {}).get("group"))
    print(to_markdown(written["table"]))
    print(f"wrote table.md, table.csv and plots to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
