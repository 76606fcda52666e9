"""Read an offline W&B run back from disk (`<output_dir>/wandb/offline-run-*/run-<id>.wandb`).

The `.wandb` file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version 0),
then 32 KiB blocks of records, each `crc32 (4) | length (2) | type (1) | data`, where the type
says whether `data` is a whole protobuf `Record` or its first/middle/last piece.
"""
import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_record_bytes(path: Path):
    """Yield the payload of each logical record in a `.wandb` file."""
    data = Path(path).read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path} is not a W&B run file (bad header)")
    pos, pieces = len(HEADER), []
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        if (kind == 0 and length == 0) or pos + 7 + length > len(data):
            break  # zero padding, or a record still being written
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pieces = [chunk]
        elif kind == MIDDLE:
            pieces.append(chunk)
        elif kind == LAST:
            yield b"".join(pieces + [chunk])


def _items(updates) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}


@dataclass
class OfflineRun:
    run_id: str
    group: str = ""
    tags: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    images: list = field(default_factory=list)

    def metric(self, name: str) -> list:
        """Every logged value of a scalar, in logging order."""
        return [row[name] for row in self.history if name in row]


def read_offline_run(run_dir: Path, wait_seconds: float = 30.0) -> OfflineRun:
    """Parse one `offline-run-*` folder: run id, group, tags, config, history rows, summary, images.

    W&B's service may still be writing the file for a moment after `wandb.finish()` returns: until the
    run's `exit` record is on disk, re-read for up to `wait_seconds` (a crashed run never writes one;
    then what is there is returned).
    """
    run_dir = Path(run_dir)
    run_file = _run_file(run_dir)
    deadline = time.monotonic() + wait_seconds
    while True:
        run, exited = _parse_run_file(run_file)
        if exited or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # keys with a slash ("val/toy_samples") are folders under media/images
    run.images = sorted(str(p) for p in (run_dir / "files" / "media" / "images").rglob("*.png"))
    return run


def _parse_run_file(path: Path) -> tuple[OfflineRun, bool]:
    """The run in a `.wandb` file and whether its `exit` record has been written."""
    from wandb.proto import wandb_internal_pb2 as pb

    run, exited = OfflineRun(run_id=_run_id(path)), False
    for payload in iter_record_bytes(path):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        exited = exited or kind == "exit"
        if kind == "run":
            run.group, run.tags = record.run.run_group, list(record.run.tags)
            run.config.update(_items(record.run.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
    return run, exited


def _run_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("run-*.wandb"))


def _run_file(folder: Path) -> Path:
    files = _run_files(folder)
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {folder}")
    return files[0]


def _run_id(run_file: Path) -> str:
    return run_file.stem.removeprefix("run-")


def offline_run_id(folder: Path) -> str:
    """The W&B run id of an `offline-run-*` folder, from its `run-<id>.wandb` file.

    Not from the folder name: W&B names a folder `offline-run-<time>-<id>`, and when two attempts start in
    the same second the second becomes `offline-run-<time>-<id>-1`.
    """
    return _run_id(_run_file(folder))


def _attempt_order(folder: Path) -> tuple[str, int]:
    """Sort key: start time, then W&B's same-second suffix (`-1`, `-2`, ... `-10` numerically)."""
    time_stamp = folder.name.removeprefix("offline-run-")[:15]  # YYYYMMDD_HHMMSS
    files = _run_files(folder)
    suffix = folder.name.rsplit(_run_id(files[0]), 1)[-1].lstrip("-") if files else ""
    return time_stamp, int(suffix) if suffix.isdigit() else 0


def find_offline_runs(output_dir: Path) -> list[Path]:
    """The `offline-run-*` folders under `<output_dir>/wandb`, oldest attempt first."""
    return sorted(Path(output_dir).glob("wandb/offline-run-*"), key=_attempt_order)


def merged_history(output_dir: Path, resume_key: str = "resumed_at_step", folders: list[Path] | None = None,
                   wait_seconds: float = 30.0) -> list[dict]:
    """The history of a run resumed across several offline folders (one per attempt), one row per step.

    Folders are read oldest first; a folder whose config holds `resume_key` (the global step it resumed from)
    drops the rows earlier folders logged past that step (an attempt killed after its last checkpoint), and
    rows at the same step merge. Each row keeps its `_step`.
    """
    folders = find_offline_runs(output_dir) if folders is None else sorted(folders, key=_attempt_order)
    rows: dict[int, dict] = {}
    for index, folder in enumerate(folders):
        run = read_offline_run(folder, wait_seconds=wait_seconds if index == len(folders) - 1 else 0.0)
        resumed_at = run.config.get(resume_key)
        if isinstance(resumed_at, dict):  # W&B stores config values as {"value": ...}
            resumed_at = resumed_at.get("value")
        if resumed_at is not None:
            rows = {step: row for step, row in rows.items() if step <= int(resumed_at)}
        for row in run.history:
            if "_step" in row:
                rows.setdefault(int(row["_step"]), {}).update(row)
    return [rows[step] for step in sorted(rows)]
