"""`run.json`: the on-disk record of a run that `compare.py` reads (keys fixed in DESIGN.md)."""
import json
import os
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

RUN_FILE = "run.json"
MAX_HISTORY = 2000


def write_json_atomic(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


def read_run_record(output_dir: Path) -> dict | None:
    path = Path(output_dir) / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else None


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
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _scalars(metrics: dict) -> dict:
    out = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)):
            out[name] = float(value)
    return out


class RunRecord(L.Callback):
    """Keeps `<output_dir>/run.json` current: status, last and best metrics, checkpoints, W&B run."""

    def __init__(self, output_dir: str, config: dict, seed: int | None = None):
        self.path = Path(output_dir) / RUN_FILE
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
            "started_at": _now(),
            "finished_at": None,
            "wandb": None,
            "likelihood": None,
            "history": {},
        }

    def _merge_from_disk(self) -> None:
        """Adopt what an earlier process of this same run wrote (ddp_spawn runs fit and test in fresh workers)."""
        on_disk = read_run_record(self.path.parent)
        if on_disk and on_disk.get("started_at") == self.record["started_at"]:
            for key in ("metrics", "best", "checkpoints", "history"):
                self.record[key] = {**on_disk.get(key, {}), **self.record[key]}
            for key in ("family", "divergence", "data", "wandb", "likelihood"):
                self.record[key] = self.record[key] or on_disk.get(key)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer
        self._merge_from_disk()
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
        self.write()

    def _update(self, trainer) -> None:
        scalars = _scalars(trainer.logged_metrics)
        self.record["metrics"].update(scalars)
        for name, value in scalars.items():
            series = self.record["history"].setdefault(name, [])
            if not series or series[-1][0] != trainer.global_step:
                series.append([trainer.global_step, value])
            if len(series) > MAX_HISTORY:
                del series[1::2]
        self._record_checkpoints(trainer)

    def _record_checkpoints(self, trainer) -> None:
        ckpt = trainer.checkpoint_callback
        if ckpt is not None:
            paths = {"last": ckpt.last_model_path, "best": ckpt.best_model_path}
            self.record["checkpoints"].update({name: path for name, path in paths.items() if path})
            if ckpt.monitor and ckpt.best_model_score is not None:
                self.record["best"][ckpt.monitor] = float(ckpt.best_model_score)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            self._update(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._update(trainer)
            self.write()

    def on_train_end(self, trainer, pl_module) -> None:
        self._update(trainer)
        self.write()

    def on_test_end(self, trainer, pl_module) -> None:
        self._update(trainer)
        self.write()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.finish(status_for(exception))

    def finish(self, status: str) -> None:
        """Set the final status, keeping what spawned workers wrote to disk for this run."""
        self._merge_from_disk()
        if getattr(self, "_trainer", None) is not None:
            self._record_checkpoints(self._trainer)
        self.record.update(status=status, finished_at=_now())
        self.write()

    @rank_zero_only
    def write(self) -> None:
        write_json_atomic(self.path, self.record)
