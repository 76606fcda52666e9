"""divlab from Python: `train` a run as the command line would, `compare` finished runs (`load_run` rebuilds
one: `divlab.saved_runs`)."""
from pathlib import Path
from typing import NamedTuple


class TrainedRun(NamedTuple):
    run_dir: Path  # the output directory: run.json, checkpoints/, samples/, ...
    metrics: dict  # the last value of every logged metric, as in run.json


def train(overrides: list[str] = ()) -> TrainedRun:
    """One run of `divlab train OVERRIDES` (e.g. `["experiment=vae_ring8", "trainer.max_epochs=2"]`): the same
    config, output directory and files; raises the run's exception instead of exiting."""
    from divlab.cli.hydra_app import run_once
    from divlab.cli.train import run_job

    if isinstance(overrides, str):
        raise TypeError(f"overrides={overrides!r}: pass a list of overrides, e.g. [{overrides!r}]")
    run_dir, metrics = run_once(run_job, "train", list(overrides))
    return TrainedRun(run_dir, metrics)


def compare(runs, metrics: list[str] | None = None, out=None, log_dir="outputs") -> str:
    """The Markdown table `divlab compare` prints, of `runs`: run or multirun directories, or the name of a
    group (an experiment preset, e.g. "study_ring8") whose runs are under `log_dir`. With `out`, also writes
    table.md, table.csv and the plots there."""
    from divlab.cli.compare import compare as write_comparison
    from divlab.tracking.runs import group_run_dirs, load_runs
    from divlab.tracking.table import build_table, to_markdown

    paths = []
    for item in [runs] if isinstance(runs, (str, Path)) else runs:
        paths += [Path(item)] if Path(item).exists() else group_run_dirs(Path(log_dir), str(item))
    records = load_runs(paths)
    table = write_comparison(records, Path(out), metrics)["table"] if out is not None else build_table(records, metrics)
    return to_markdown(table)
