"""Reading and writing `run.json`, the record every run leaves in its output directory (keys fixed in DESIGN.md).

The file is strict JSON: a non-finite number is written as the string "NaN", "Infinity" or "-Infinity"
(Python's own spellings), and `read_run_record` turns those in `metrics`, `best` and `history` back into floats.
Kept apart from the callback that writes it during a run (`tracking/run_record.py`), so that whatever only reads
a run's files (checkpoints, saved runs, compare) needs nothing of Lightning's.
"""
import json
import logging
import math
from pathlib import Path

from divlab.atomic_files import atomic_write

log = logging.getLogger("divlab.run_files")

RUN_FILE = "run.json"


NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _strict(value):
    """`value` with every non-finite float spelled as a string, so `json.dump(allow_nan=False)` accepts it."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def write_json_atomic(path: Path, data: dict, strict: bool = True) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path` (mode 0666 & ~umask).
    `strict`: non-finite numbers as strings (see the module docstring), else as Python's bare NaN/Infinity."""
    with atomic_write(path, "w") as f:
        json.dump(_strict(data) if strict else data, f, indent=2, default=str, allow_nan=not strict)


def decode_non_finite(metrics: dict) -> dict:
    """{name: value} with the strict spellings "NaN", "Infinity", "-Infinity" read back as floats."""
    return {name: NON_FINITE.get(v, v) if isinstance(v, str) else v for name, v in metrics.items()}


class RunRecordError(ValueError):
    """A run.json that is not a JSON object."""


def read_run_record(output_dir: Path) -> dict | None:
    """The run record in `output_dir`, None when there is none; RunRecordError naming the file when it is corrupt."""
    path = Path(output_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise RunRecordError(f"{path} is not valid JSON ({error}); fix or move it away") from None
    if not isinstance(record, dict):
        raise RunRecordError(f"{path} holds a JSON {type(record).__name__}, not a run record; fix or move it away")
    for key in ("metrics", "best"):
        if isinstance(record.get(key), dict):
            record[key] = decode_non_finite(record[key])
    if isinstance(record.get("history"), dict):
        record["history"] = {name: [[step, NON_FINITE.get(v, v) if isinstance(v, str) else v] for step, v in series]
                             for name, series in record["history"].items()}
    return record


def read_run_record_or_none(output_dir: Path) -> dict | None:
    """`read_run_record`, but a corrupt file is skipped with a warning naming it (for scans over many runs)."""
    try:
        return read_run_record(output_dir)
    except (RunRecordError, OSError) as error:
        log.warning("skipping %s", error)
        return None
