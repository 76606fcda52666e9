"""How a benchmark's summary says where it came from: the command as run, the commit, the machine, the date.

    started = Provenance.now(__file__, argv)      # first thing in main
    summary = {**started.finished(threads), ...}  # last: adds the whole benchmark's wall time

A results page shows these beside the numbers (`divlab.tracking.benchmark_tables`), so a committed benchmark
record says how to remake it.
"""
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def command_line(script: str | Path, argv: list[str] | None) -> str:
    """The command as run, copy-paste runnable from the repository root: `OMP_NUM_THREADS=N` when set, then
    `python`, the script relative to the root and its arguments (`sys.argv[1:]` when `argv` is None)."""
    script = Path(script).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    threads = os.environ.get("OMP_NUM_THREADS")
    words = ["python", str(shown), *(sys.argv[1:] if argv is None else argv)]
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + shlex.join(words)


# What benchmarks write, not what they run: a batch of benchmarks leaves its earlier records uncommitted.
OUTPUTS = "docs/results"


def git_commit(root: Path = ROOT) -> str:
    """The repository's short commit, with `+dirty` when tracked files other than the results (`docs/results/`:
    records and pages) differ from it; `unknown` without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                  f":(exclude){OUTPUTS}"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if changes.stdout.strip() else "")


def machine() -> str:
    """The CPU's model name (Linux) or its architecture, and the core count; with CUDA, every GPU's name."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
             if line.startswith("model name")]
    cpu = f"{names[0] if names else platform.machine()}, {os.cpu_count()} CPUs"
    if not torch.cuda.is_available():
        return cpu
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return cpu + "; " + ", ".join(f"{gpus.count(name)} × {name}" for name in dict.fromkeys(gpus))


@dataclass(frozen=True)
class Provenance:
    command: str
    commit: str
    date: str  # UTC, ISO 8601, when the benchmark started
    machine: str
    started: float  # time.perf_counter() at the start

    @classmethod
    def now(cls, script: str | Path, argv: list[str] | None) -> "Provenance":
        return cls(command_line(script, argv), git_commit(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   machine(), time.perf_counter())

    def finished(self, threads: int) -> dict:
        """The summary's provenance fields, with the wall time from the start until now."""
        return {"command": self.command, "commit": self.commit, "date": self.date, "machine": self.machine,
                "torch": torch.__version__, "threads": threads, "wall_s": time.perf_counter() - self.started}
