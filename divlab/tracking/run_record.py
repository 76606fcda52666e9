"""`run.json`: the on-disk record of a run that `compare.py` reads (keys fixed in DESIGN.md).

A rerun in the same output directory appends to the record it finds there: its attempt is added to
`attempts`, and `history` stays keyed by step (rows past the step it resumed from, which the killed attempt
logged after its last checkpoint, are replaced by the rerun's). Until the rerun starts training or testing,
the file on disk is left as it was, so a rerun that fails early damages nothing.

Reading and writing the file itself (strict JSON, non-finite numbers spelled out): `divlab/run_files.py`.
"""
import logging
import os
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from hydra.experimental.callback import Callback as HydraCallback
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from divlab.run_files import RUN_FILE, RunRecordError, read_run_record, write_json_atomic

MAX_HISTORY = 2000
log = logging.getLogger("divlab.run_record")


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def status_for(exception: BaseException) -> str:
    """`interrupted` for Ctrl-C and SIGTERM (Lightning's SIGTERMException is a SystemExit), else `failed`."""
    return "interrupted" if isinstance(exception, (KeyboardInterrupt, SystemExit)) else "failed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _scalar(value) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _merge_series(old: list, new: list) -> list:
    """Two `[[step, value], ...]` series merged by step; `new` wins where both have a step."""
    merged = {int(step): value for step, value in old}
    merged.update({int(step): value for step, value in new})
    return [[step, merged[step]] for step in sorted(merged)]


def where(trainer) -> dict:
    """Where an attempt ran: its processes and cluster environment (SLURMEnvironment when SLURM set the ranks),
    and the SLURM job (`<array job>_<task>` for a sweep's job array), to find its log files."""
    environment = getattr(trainer.strategy, "cluster_environment", None) or getattr(
        getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)  # one process: no strategy's
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array else os.environ.get("SLURM_JOB_ID")
    return {"world_size": trainer.world_size, "num_nodes": trainer.num_nodes,
            "cluster_environment": type(environment).__name__ if environment is not None else None,
            "slurm_job_id": job}


class RunRecord(L.Callback):
    """Keeps `<output_dir>/run.json` current: status, last and best metrics, history, checkpoints, W&B run.

    `previous` is the record already in the output directory (a rerun appends to it); `resume_step` is the
    logging step of the checkpoint resumed from, past which the earlier history is dropped; `config_changes`
    ({key: (saved, now)}), the settings a rerun was allowed to change (`resume.allow_config_change`).
    """

    def __init__(self, output_dir: str, config: dict, seed: int | None = None, previous: dict | None = None,
                 resumed_from: str | None = None, resume_step: int | None = None,
                 config_changes: dict | None = None):
        self.path = Path(output_dir) / RUN_FILE
        self.attempt = {"id": uuid.uuid4().hex[:12], "started_at": _now(), "finished_at": None, "status": "running",
                        "resumed_from": resumed_from, "resume_step": resume_step, "evaluation_seconds": 0.0}
        if config_changes:  # allowed by resume.allow_config_change: {key: {"saved": ..., "now": ...}}
            self.attempt["config_changes"] = {key: {"saved": old, "now": new}
                                              for key, (old, new) in config_changes.items()}
        self._evaluation_started: float | None = None
        self.record = {
            "family": None,
            "divergence": None,
            "data": None,
            "seed": seed,
            "status": "running",
            "config": config,
            "metrics": {},
            "best": {},
            "checkpoints": {},
            "git_commit": git_commit(),
            "started_at": self.attempt["started_at"],
            "finished_at": None,
            "wandb": None,
            "likelihood": None,
            "mode_histogram": {},  # per split, the last toy evaluation's counts per mode (callbacks/toy_metrics.py)
            "history": {},
            "global_step": 0,
            "attempts": [],
        }
        self.previous = previous
        if previous:
            for key in ("family", "divergence", "data", "started_at", "wandb", "likelihood", "global_step"):
                self.record[key] = previous.get(key, self.record[key])
            for key in ("metrics", "best", "checkpoints", "mode_histogram"):
                self.record[key] = dict(previous.get(key) or {})
            self.record["attempts"] = list(previous.get("attempts") or [])
            keep = (lambda step: step <= resume_step) if resume_step is not None else (lambda step: True)
            self.record["history"] = {name: [row for row in series if keep(row[0])]
                                      for name, series in (previous.get("history") or {}).items()}
        self.record["attempts"].append(self.attempt)
        self.started = False

    @property
    def logger(self) -> "RecordLogger":
        """A Lightning logger feeding this record what was logged, at the step it was logged."""
        return RecordLogger(self)

    def _merge_from_disk(self) -> None:
        """Adopt what another process of this same attempt wrote (ddp_spawn runs fit and test in fresh workers)."""
        try:
            on_disk = read_run_record(self.path.parent)
        except RunRecordError:
            return
        attempts = (on_disk or {}).get("attempts") or [{}]
        if attempts[-1].get("id") != self.attempt["id"]:
            return
        self.started = True
        self.attempt["evaluation_seconds"] = max(self.attempt["evaluation_seconds"],
                                                 attempts[-1].get("evaluation_seconds") or 0.0)
        for key in ("metrics", "best", "checkpoints", "mode_histogram"):
            self.record[key] = {**(on_disk.get(key) or {}), **self.record[key]}
        for name, series in (on_disk.get("history") or {}).items():
            self.record["history"][name] = _merge_series(series, self.record["history"].get(name, []))
        for key in ("family", "divergence", "data", "wandb", "likelihood"):
            self.record[key] = self.record[key] or on_disk.get(key)
        self.record["global_step"] = max(self.record["global_step"], on_disk.get("global_step") or 0)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer
        self._merge_from_disk()
        self.attempt.update(where(trainer))
        hp = pl_module.hparams
        self.record.update(family=hp.get("family"), divergence=hp.get("divergence"))
        if trainer.datamodule is not None:
            self.record["data"] = getattr(trainer.datamodule, "name", None)
        if hasattr(pl_module, "log_likelihood"):
            self.record["likelihood"] = {
                "exact": bool(getattr(pl_module, "log_likelihood_is_exact", False)),
                "bound": getattr(pl_module, "log_likelihood_bound", None),
            }
        for logger in trainer.loggers if trainer.is_global_zero else []:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                self.record["wandb"] = {"id": run.id, "mode": run.settings.mode, "project": run.project}

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        """Record what a logging call of the trainer sent to the loggers, keyed by the trainer's global step
        (optimizer steps so far: the step checkpoints record and resume from)."""
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            step = trainer.global_step
        if trainer is not None and trainer.state.fn == "fit":
            self.record["global_step"] = max(self.record["global_step"], step)
        else:  # test/validate alone, e.g. in a spawned worker whose trainer never restored the fit loop
            step = max(step, self.record["global_step"])
        for name, value in metrics.items():
            value = _scalar(value)
            if name == "epoch" or value is None:
                continue
            self.record["metrics"][name] = value
            series = self.record["history"].setdefault(name, [])
            if series and series[-1][0] == step:
                series[-1][1] = value
            else:
                series.append([step, value])
                if series[-2:-1] and series[-2][0] > step:
                    series.sort(key=lambda row: row[0])
            if len(series) > MAX_HISTORY:
                del series[1::2]

    def _record_checkpoints(self, trainer) -> None:
        if trainer.fast_dev_run:  # Lightning swaps the loggers, this record's included, for a DummyLogger
            for name, value in trainer.logged_metrics.items():
                if _scalar(value) is not None:
                    self.record["metrics"][name] = _scalar(value)
        ckpt = trainer.checkpoint_callback
        if ckpt is not None:
            paths = {"last": getattr(ckpt, "last_model_path", ""), "best": getattr(ckpt, "best_model_path", "")}
            self.record["checkpoints"].update({name: path for name, path in paths.items() if path})
            if getattr(ckpt, "monitor", None) and ckpt.best_model_score is not None:
                self.record["best"][ckpt.monitor] = float(ckpt.best_model_score)

    def _start(self) -> None:
        self.started = True
        self.write()

    def on_train_start(self, trainer, pl_module) -> None:
        self._start()

    def on_test_start(self, trainer, pl_module) -> None:
        self._start()
        self._start_evaluation()

    # The attempt's `evaluation_seconds`: wall time inside the validation (sanity check included) and test
    # loops, whose batches and epoch-end callbacks are where every evaluation runs (samples, likelihoods,
    # FID-family and toy metrics). This record comes after the configured callbacks, so the time spans theirs.
    def _start_evaluation(self) -> None:
        self._evaluation_started = time.perf_counter()

    def _stop_evaluation(self) -> None:
        if self._evaluation_started is not None:
            self.attempt["evaluation_seconds"] += time.perf_counter() - self._evaluation_started
            self._evaluation_started = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._start_evaluation()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._stop_evaluation()
        if not trainer.sanity_checking and self.started:
            self._record_checkpoints(trainer)
            self.write()

    def on_train_end(self, trainer, pl_module) -> None:
        self._record_checkpoints(trainer)
        self.write()

    def on_test_end(self, trainer, pl_module) -> None:
        self._stop_evaluation()
        self._record_checkpoints(trainer)
        self.write()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.finish(status_for(exception), reason=str(exception) or type(exception).__name__)

    def finish(self, status: str, reason: str | None = None) -> None:
        """Set the final status, keeping what spawned workers wrote to disk for this attempt.

        An attempt that never started training or testing leaves an existing record as it was.
        """
        self._stop_evaluation()
        self._merge_from_disk()
        if not self.started and self.previous:
            log.warning("%s left as it was: this rerun stopped (%s) before training", self.path, status)
            return
        if getattr(self, "_trainer", None) is not None:
            self._record_checkpoints(self._trainer)
            if self._trainer.state.fn == "fit":  # the step this attempt stopped at (a resumed attempt's resume_step)
                self.attempt["global_step"] = self._trainer.global_step
        self.attempt.update(status=status, finished_at=_now(), reason=reason)
        self.record.update(status=status, finished_at=self.attempt["finished_at"])
        if reason is not None or status != "completed":
            self.record["reason"] = reason
        else:
            self.record.pop("reason", None)
        self.write()

    @rank_zero_only
    def write(self) -> None:
        write_json_atomic(self.path, self.record)


class RecordLogger(Logger):
    """The run record as a Lightning logger: receives each logging call with its step (training curves)."""

    def __init__(self, record: RunRecord):
        super().__init__()
        self.record = record

    @property
    def name(self) -> str:
        return "run_record"

    @property
    def version(self) -> str:
        return self.record.attempt["id"]

    @property
    def save_dir(self) -> str:
        return str(self.record.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.record.log_metrics(metrics, int(step or 0))


class KeepSavedConfig(HydraCallback):
    """A Hydra callback: a rerun that fails before training (its run.json untouched) leaves `.hydra/*.yaml`
    as they were, instead of Hydra's copy of the config that failed (configs/hydra/default.yaml enables it)."""

    def on_run_start(self, config, **kwargs) -> None:
        output_dir = Path(str(config.hydra.run.dir))
        self._saved = _read_files(output_dir, [RUN_FILE, *(f"{config.hydra.output_subdir}/{name}" for name in
                                                         ("config.yaml", "hydra.yaml", "overrides.yaml"))])

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus

        saved = getattr(self, "_saved", {})
        output_dir = Path(str(config.hydra.runtime.output_dir))
        if job_return.status != JobStatus.FAILED or RUN_FILE not in saved:
            return
        if _read_files(output_dir, [RUN_FILE]).get(RUN_FILE) != saved[RUN_FILE]:
            return  # the rerun started and recorded itself: its config is the run's config now
        for name, data in saved.items():
            if name != RUN_FILE:
                (output_dir / name).write_bytes(data)
        log.warning("%s: the rerun failed before training; kept the saved .hydra config", output_dir)


def _read_files(directory: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in names if (directory / name).is_file()}
