"""The committed records behind the results pages: a run set's run.json files, trimmed to what its tables need.

A record set is one JSON file under `docs/results/records/`: how the runs were made (`command`, `machine`,
`threads`, `notes`) and one entry per run with its label, data, seed, status, resolved config, the chosen final
metrics, optionally the chosen metrics' history, its git commit and wall time. The results tables are computed
from these files alone (`divlab results build`), so a number on a page always has a record behind it.

    divlab results record docs/results/records/best_ring8.json outputs/multiruns/<time> \\
        --metrics test/modes_covered test/high_quality_percent --command "python train.py -m experiment=best_ring8"
"""
import json
import platform
from datetime import datetime
from pathlib import Path

import torch

from divlab.run_files import write_json_atomic
from divlab.tracking.runs import load_runs

KEPT = ("family", "divergence", "data", "seed", "status", "config", "git_commit", "finished_at", "mode_histogram")


def wall_seconds(record: dict) -> float | None:
    """Wall time over a run's attempts (each from its start to its finish); None when an attempt has no finish."""
    total = 0.0
    for attempt in record.get("attempts") or []:
        if not attempt.get("finished_at"):
            return None
        start, end = (datetime.fromisoformat(attempt[key]) for key in ("started_at", "finished_at"))
        total += (end - start).total_seconds()
    return round(total, 1)


def trim_record(record: dict, metrics: list[str], history: list[str] = ()) -> dict:
    """What a results table needs of one run record: its identity, config, the chosen final metrics (a missing
    one is left out, never filled in) and the chosen metrics' history."""
    trimmed = {key: record.get(key) for key in KEPT}
    trimmed["run"] = Path(record.get("run_dir", "")).name
    trimmed["metrics"] = {name: record["metrics"][name] for name in metrics if name in (record.get("metrics") or {})}
    if history:
        trimmed["history"] = {name: (record.get("history") or {}).get(name, []) for name in history}
    trimmed["wall_seconds"] = wall_seconds(record)
    return trimmed


def machine_description() -> str:
    """This machine in words: processor, cores, Python and torch versions."""
    import os

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def write_record_set(path: Path, run_paths: list[Path], metrics: list[str], command: str, history: list[str] = (),
                     threads: int | None = None, notes: str = "", with_failed: bool = False) -> dict:
    """Trim every completed run under `run_paths` into one record set at `path` (runs in order of seed);
    `with_failed`: the failed runs too (a study's stability column counts them)."""
    runs = load_runs([Path(p) for p in run_paths], ("completed", "failed") if with_failed else ("completed",))
    records = sorted((trim_record(run, metrics, history) for run in runs),
                     key=lambda r: (str(r.get("family")), str(r.get("divergence")), r.get("seed") or 0, r["run"]))
    record_set = {"command": command, "machine": machine_description(), "threads": threads, "notes": notes,
                  "runs": records}
    write_json_atomic(Path(path), record_set)
    return record_set


def read_record_set(path: Path) -> dict:
    """A record set as written by `write_record_set`."""
    return json.loads(Path(path).read_text())


def commits(record_set: dict) -> list[str]:
    """The distinct git commits the set's runs ran on, short form, in order of first appearance."""
    seen = []
    for run in record_set["runs"]:
        commit = (run.get("git_commit") or "unknown")[:7]
        if commit not in seen:
            seen.append(commit)
    return seen
