"""Find and load run records (`run.json`) from run directories and multirun directories."""
from collections import Counter
from pathlib import Path

from divlab.run_files import RUN_FILE, read_run_record_or_none


class RunSelectionError(ValueError):
    """The runs asked for cannot be compared (none found, no record, different data)."""


def find_run_dirs(path: Path) -> list[Path]:
    """`path` itself when it holds a run.json, else every directory below it that does."""
    path = Path(path)
    if not path.exists():
        raise RunSelectionError(f"{path} does not exist")
    if (path / RUN_FILE).exists():
        return [path]
    if not path.is_dir():
        raise RunSelectionError(f"{path} is not a run directory (no {RUN_FILE})")
    found = sorted(p.parent for p in path.glob(f"**/{RUN_FILE}"))
    if not found:
        hint = "it is empty" if not any(path.iterdir()) else f"no {RUN_FILE} below it"
        raise RunSelectionError(f"no runs in {path}: {hint}; pass a run's output directory or a multirun directory")
    return found


def group_run_dirs(log_dir: Path, group: str) -> list[Path]:
    """Every run directory under `log_dir` whose record says it belongs to `group` (`run.group` in its config)."""
    groups: dict[str, list[Path]] = {}
    for run_dir in find_run_dirs(log_dir):
        config = (read_run_record_or_none(run_dir) or {}).get("config") or {}
        groups.setdefault((config.get("run") or {}).get("group"), []).append(run_dir)
    if group not in groups:
        known = ", ".join(sorted(str(g) for g in groups if g)) or "none"
        raise RunSelectionError(f"no runs of group {group!r} under {log_dir}; its groups: {known}")
    return groups[group]


def load_runs(paths: list[Path], statuses: tuple[str, ...] = ("completed",)) -> list[dict]:
    """Every run record under `paths` with one of `statuses`, each with its `run_dir` added.

    Raises RunSelectionError for missing paths, no records, or runs of different data mixed together.
    """
    runs, skipped = [], Counter()
    for run_dir in (d for path in paths for d in find_run_dirs(path)):
        record = read_run_record_or_none(run_dir)  # a corrupt run.json is skipped with a warning naming it
        if record is None:
            skipped["unreadable"] += 1
            continue
        if record.get("status") not in statuses:
            skipped[record.get("status")] += 1
            continue
        runs.append(record | {"run_dir": str(run_dir)})
    if not runs:
        detail = ", ".join(f"{n} {status}" for status, n in skipped.items()) or "none"
        raise RunSelectionError(f"no {'/'.join(statuses)} runs to compare (skipped: {detail})")
    data = Counter(run.get("data") for run in runs)
    if len(data) > 1:
        listing = ", ".join(f"{name} ({n} runs)" for name, n in sorted(data.items(), key=str))
        raise RunSelectionError(f"runs of different data mixed together: {listing}; compare one data set at a time")
    return runs


def run_label(run: dict) -> str:
    """`family` or `family/divergence` when the family offers a choice of divergence."""
    family, divergence = run.get("family") or "?", run.get("divergence")
    default = {"vae": "elbo"}.get(family)
    return family if divergence in (None, default) else f"{family}/{divergence}"
