"""What a sweep folder still lacks: every job its command asked for, against the runs its folder holds.

A sweep (`python train.py -m ...`) saves its whole config as `multirun.yaml` in its folder, and each job the
overrides it ran with as `<job dir>/.hydra/overrides.yaml`. The jobs asked for are the sweeper's (the study
sweeper's members × params × the command line, `hydra_plugins.divlab_study_sweeper.study_jobs`; Hydra's basic
sweeper's is the command line's cross product, the same function with no members). A job is matched to the run
directory whose overrides are the same set, and is missing until that run's record says `completed`.
"""
from pathlib import Path
from typing import NamedTuple

from omegaconf import OmegaConf

from divlab.run_files import RUN_FILE, read_run_record_or_none

SWEEP_FILE = "multirun.yaml"


class Job(NamedTuple):
    overrides: tuple[str, ...]
    status: str              # completed | failed | interrupted | running | not started
    run_dir: Path | None


def is_sweep(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def asked_jobs(sweep_dir: Path) -> list[tuple[str, ...]]:
    """The overrides of every job of the sweep, in the order it runs them. A command line that narrows a key the
    sweeper's `params` sweep (`seed=0`: one seed of a study, run in pieces) narrows that launch, not the sweep: its
    folder's sweep is still every value of `params`."""
    from hydra_plugins.divlab_study_sweeper import study_jobs

    config = OmegaConf.load(Path(sweep_dir) / SWEEP_FILE)
    sweeper = config.hydra.sweeper
    members = [dict(m) for m in sweeper.get("members") or []]
    params = dict(sweeper.get("params") or {})
    command_line = [o for o in config.hydra.overrides.task if o.split("=", 1)[0] not in params]
    return [tuple(job) for job in study_jobs(members, params, command_line)]


def job_overrides(run_dir: Path) -> frozenset[str] | None:
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    return frozenset(OmegaConf.load(path)) if path.is_file() else None


def sweep_jobs(sweep_dir: Path) -> list[Job]:
    """Every job asked for, with the status of its run (`not started` when no directory holds it)."""
    sweep_dir = Path(sweep_dir)
    runs = {}
    for record_dir in sorted({p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")}):
        runs[job_overrides(record_dir)] = record_dir
    jobs = []
    for overrides in asked_jobs(sweep_dir):
        run_dir = runs.get(frozenset(overrides))
        record = read_run_record_or_none(run_dir) if run_dir and (run_dir / RUN_FILE).exists() else None
        status = (record or {}).get("status") or ("not started" if record is None else "running")
        jobs.append(Job(overrides, status, run_dir))
    return jobs


def progress_report(jobs: list[Job]) -> str:
    """`N of M jobs completed`, then one line per job that is not, with its status (Markdown)."""
    missing = [job for job in jobs if job.status != "completed"]
    lines = [f"{len(jobs) - len(missing)} of {len(jobs)} jobs completed"
             + (f"; {len(missing)} missing (rerun the sweep's command to complete them):" if missing else ".")]
    lines += [f"- {job.status}: {' '.join(job.overrides)}" for job in missing]
    return "\n".join(lines) + "\n"
