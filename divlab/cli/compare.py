"""Compare finished runs: a table (Markdown + CSV) and plots, from run records or from W&B.

    divlab compare RUN_DIR [RUN_DIR ...] --out OUT_DIR [--metrics test/nll ...] [--ignore-keys KEY ...] [--log-wandb]
    divlab compare --wandb-project divlab --group study_ring8 --out OUT_DIR      (online)

(`python compare.py ...` in a checkout.)
A RUN_DIR is one run's output directory or a multirun directory holding many.
"""
import argparse
import sys
from pathlib import Path

from divlab.tracking.frontier import (
    frontier_markdown, frontier_points, frontier_summary_markdown, reference_reward, seed_means)
from divlab.tracking.plots import (
    plot_curves,
    plot_metric_bars,
    plot_quality_vs_coverage,
    plot_reward_kl_frontier,
    plot_sample_panel,
)
from divlab.tracking.runs import RunSelectionError, load_runs, run_label  # noqa: F401 (re-exported for tests)
from divlab.tracking.table import build_table, to_markdown, write_csv


def compare(runs: list[dict], out: Path, metrics: list[str] | None = None) -> dict:
    """Write table.md, table.csv and the PNG plots under `out`; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(runs, metrics)
    (out / "table.md").write_text(to_markdown(table))
    write_csv(table, out / "table.csv")
    points = frontier_points(runs)
    if points:  # alignment runs: one row per run (per β), which the seed-averaged table would merge
        reference = reference_reward(runs)
        (out / "frontier.md").write_text(frontier_markdown(points, reference))
        summary = frontier_summary_markdown(seed_means(points), reference)
        (out / "frontier_summary.md").write_text(summary)
        print(summary)
    return {
        "table": table,
        "bars": plot_metric_bars(table, out / "metrics.png"),
        "curves": plot_curves(runs, out / "curves.png"),
        "tiles": plot_sample_panel(runs, out / "samples.png"),
        "quality_vs_coverage": plot_quality_vs_coverage(runs, out / "quality_vs_coverage.png"),
        "frontier": plot_reward_kl_frontier(runs, out / "frontier.png"),
    }


def without_config_keys(runs: list[dict], keys: list[str]) -> list[dict]:
    """The runs with these dotted config keys removed, so they no longer tell configurations apart (e.g. a key
    added to the configs after older runs were made, which the method does not read). ValueError for a key no
    run has."""
    def drop(config: dict, path: list[str]) -> tuple[dict, bool]:
        head, *rest = path
        if head not in config:
            return config, False
        if not rest:
            return {k: v for k, v in config.items() if k != head}, True
        if not isinstance(config[head], dict):
            return config, False
        inner, found = drop(config[head], rest)
        if not inner:  # nothing left under it: no empty section to tell runs apart
            return {k: v for k, v in config.items() if k != head}, found
        return {**config, head: inner}, found

    for key in keys:
        stripped = [drop(run.get("config") or {}, key.split(".")) for run in runs]
        if not any(found for _, found in stripped):
            raise ValueError(f"--ignore-keys {key}: no run's config has it")
        runs = [{**run, "config": config} for run, (config, _) in zip(runs, stripped)]
    return runs


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
        records.append({
            "family": (config.get("run") or {}).get("family") or next((t.split(":", 1)[1] for t in run.tags if t.startswith("family:")), None),
            "divergence": next((t.split(":", 1)[1] for t in run.tags if t.startswith("divergence:")), None),
            "data": next((t.split(":", 1)[1] for t in run.tags if t.startswith("data:")), None),
            "seed": config.get("seed"),
            "status": "completed",
            "metrics": {k: v for k, v in run.summary.items() if isinstance(v, (int, float))},
            "history": history,
            "run_dir": run.dir,
        })
    return records


def log_to_wandb(written: dict, out: Path, group: str | None) -> None:
    """Log the table and plots as a W&B run of job type `comparison` in the study's group."""
    import wandb

    from divlab.tracking.wandb_logger import resolve_mode

    table = written["table"]
    with wandb.init(project="divlab", group=group, job_type="comparison", dir=str(out), mode=resolve_mode(None)) as run:
        columns = ["run", *table.columns, "n"] + table.metrics
        rows = [[*table.settings[name], table.counts[name]] + [cells[m].mean if m in cells else None for m in table.metrics]
                for name, cells in table.rows.items()]
        run.log({"comparison/table": wandb.Table(columns=columns, data=rows)})
        for png in sorted(out.glob("*.png")):
            run.log({f"comparison/{png.stem}": wandb.Image(str(png))})


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", nargs="+")
    parser.add_argument("--wandb-project")
    parser.add_argument("--group")
    parser.add_argument("--log-wandb", action="store_true", help="also log table and plots to W&B (offline without network)")
    parser.add_argument("--ignore-keys", nargs="+", default=[], metavar="KEY",
                        help="config keys (dotted) that do not tell configurations apart, e.g. one older runs lack")
    args = parser.parse_args(argv)
    try:
        if args.wandb_project:
            runs = runs_from_wandb(args.wandb_project, args.group)
        elif args.run_dirs:
            runs = load_runs(args.run_dirs)
        else:
            parser.error("pass RUN_DIR(s) or --wandb-project P --group G")
        written = compare(without_config_keys(runs, args.ignore_keys), args.out, args.metrics)
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
