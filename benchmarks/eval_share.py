"""Evaluation's share of each preset's wall time at its default settings (goal ≤ 10 %).

    python benchmarks/eval_share.py [--experiments vae_ring8 gan_ring8 ...] [--runs RUN_DIR ...] [--sweeps DIR ...]
        [--out REC.json]

Trains each experiment as its config stands (W&B off, output in a temporary directory), then reads its
run.json: the attempt's wall time (start to finish, setup included) and its `evaluation_seconds`, the
time inside the validation and test loops, where every evaluation callback runs (samples, likelihoods,
FID-family and toy metrics). The largest `time/<split>/<step>_seconds` of the last evaluation names
what costs most. With --runs, reads run directories that already exist instead of training. With --out, writes
the rows and how they were made to a record the performance page shows (`eval-share/<name>` block).
"""
import argparse
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.provenance import Provenance  # noqa: E402
from divlab import train  # noqa: E402
from divlab.config_dir import config_dir  # noqa: E402
from divlab.run_files import write_json_atomic  # noqa: E402

GOAL = 0.10
# Sweeps and long studies are many presets' runs, not one preset: measure their members instead.
NOT_PRESETS = ("study_", "best_", "align_frontier")


def presets() -> list[str]:
    names = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
    return [name for name in names if not name.startswith(NOT_PRESETS)]


def run_preset(name: str, root: Path) -> Path:
    """A fresh run of the preset in `root`/<name> (a preset listed twice gets `root`/<name>_2: a directory that
    holds a finished run would be resumed, not retrained)."""
    run_dir, repeat = root / name, 1
    while run_dir.exists():
        repeat += 1
        run_dir = root / f"{name}_{repeat}"
    run = train([f"experiment={name}", "logger=none", f"hydra.run.dir={run_dir}"])
    return run.run_dir


def share(run_dir: Path) -> dict:
    """Wall time, evaluation time and the costliest timed evaluation step of a run's last attempt."""
    record = json.loads((Path(run_dir) / "run.json").read_text())
    attempt = record["attempts"][-1]
    wall = (
        datetime.fromisoformat(attempt["finished_at"]) - datetime.fromisoformat(attempt["started_at"])
    ).total_seconds()
    evaluation = attempt.get("evaluation_seconds")
    timed = {k: v for k, v in record["metrics"].items() if k.startswith("time/") and k.endswith("_seconds") and v}
    costliest = max(timed, key=timed.get) if timed else None
    return {"experiment": record["config"].get("experiment_name") or Path(run_dir).name, "status": record["status"],
            "commit": (record.get("git_commit") or "unknown")[:7],
            "wall": wall, "evaluation": evaluation, "share": evaluation / wall if evaluation is not None else None,
            "costliest": f"{costliest} {timed[costliest]:.1f} s" if costliest else "–"}


def sweep(folder: Path) -> dict:
    """One row for a sweep folder's runs (each subfolder holding a run.json): summed wall and evaluation time, their
    share, and the runs' lowest and highest."""
    rows = [share(run.parent) for run in sorted(Path(folder).glob("*/run.json"))]
    if not rows:
        raise SystemExit(f"--sweeps {folder}: no run folder (holding run.json) in it")
    wall = sum(row["wall"] for row in rows)
    evaluation = sum(row["evaluation"] or 0.0 for row in rows)
    shares = [row["share"] for row in rows if row["share"] is not None]
    runs = f"{len(rows)} run" + ("s" if len(rows) > 1 else "")
    return {"experiment": f"{rows[0]['experiment']} ({Path(folder).name}: {runs})",
            "status": ", ".join(sorted({row["status"] for row in rows})),
            "commit": ", ".join(sorted({row["commit"] for row in rows})),
            "wall": wall, "evaluation": evaluation, "share": evaluation / wall,
            "costliest": f"runs {min(shares):.1%} – {max(shares):.1%}" if shares else "–"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--experiments", nargs="+", default=None, help=f"default: every preset ({', '.join(presets())})"
    )
    parser.add_argument("--runs", nargs="+", type=Path, default=None, help="existing run directories to read instead")
    parser.add_argument("--sweeps", nargs="+", type=Path, default=None, help="sweep folders: one row each")
    parser.add_argument("--threads", type=int, help="with --runs or --sweeps: the threads a run had (runs do not "
                        "record it); training here, this process's")
    parser.add_argument("--out", type=Path, help="also write the rows to this JSON record")
    args = parser.parse_args()
    started = Provenance.now(__file__, None)
    if args.sweeps:
        measured = (sweep(folder) for folder in args.sweeps)
    elif args.runs:
        measured = (share(run_dir) for run_dir in args.runs)
    else:  # one row per run as it ends
        root = Path(tempfile.mkdtemp(prefix="eval_share_"))
        measured = (share(run_preset(name, root)) for name in args.experiments or presets())
    print(f"| preset | status | wall s | evaluation s | share (goal ≤ {GOAL:.0%}) "
          "| costliest timed step (last evaluation) |")
    print("|---|---|---:|---:|---:|---|")
    rows = []
    for row in measured:
        rows.append(row)
        if row["share"] is None:
            print(f"| {row['experiment']} | {row['status']} | {row['wall']:.0f} | – | – (no evaluation_seconds) | "
                  f"{row['costliest']} |")
            continue
        mark = "" if row["share"] <= GOAL else " ✗"
        print(f"| {row['experiment']} | {row['status']} | {row['wall']:.0f} | {row['evaluation']:.0f} | "
              f"{row['share']:.1%}{mark} | {row['costliest']} |", flush=True)
    if args.out:
        threads = args.threads if args.runs or args.sweeps else (
            int(os.environ.get("OMP_NUM_THREADS", 0)) or torch.get_num_threads())
        write_json_atomic(args.out, {**started.finished(threads), "goal": GOAL, "rows": rows})


if __name__ == "__main__":
    main()
