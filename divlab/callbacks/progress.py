"""Progress a person can follow wherever the output goes: Rich's live bar on a terminal; in a log
file or a batch job's output (not a TTY), plain log lines through Python's logging, so they also land
in the run's `train.log`: every `every_n_steps` steps the step, epoch, speed and the latest training
losses, and after each validation every metric logged in that validation (timings `time/...` included; a
metric an evaluation callback logs every N epochs is shown at its own epochs, not repeated from the last)."""
import logging
import sys
import time

import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from divlab.validation import check_positive

log = logging.getLogger("divlab.progress")


def progress_bar(every_n_steps: int = 50) -> ProgressBar:
    """`RichProgressBar` when stdout is a terminal, else `LogLinesProgress(every_n_steps)`."""
    return RichProgressBar() if sys.stdout.isatty() else LogLinesProgress(every_n_steps)


def _format(metrics: dict, prefixes: tuple[str, ...], stale: dict | None = None) -> str:
    """`name value` pairs of the scalar metrics under `prefixes`, leaving out those still the very object they
    were in `stale` (Lightning's callback_metrics keep a metric's last value until it is logged again)."""
    stale = stale or {}
    items = []
    for name, value in sorted(metrics.items()):
        if value is stale.get(name):
            continue
        if name.startswith(prefixes) and isinstance(value, torch.Tensor) and value.numel() == 1:
            items.append(f"{name} {value.item():.4g}")
    return ", ".join(items)


class LogLinesProgress(ProgressBar):
    """A progress 'bar' made of log lines (a ProgressBar, so Lightning adds no bar of its own)."""

    def __init__(self, every_n_steps: int = 50):
        super().__init__()
        self.every_n_steps = check_positive("callbacks.progress_bar.every_n_steps", every_n_steps)
        self._enabled = True
        self._start = None
        self._before_evaluation = {}

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()
        limit = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        log.info("training %s from step %d%s", type(pl_module).__name__, trainer.global_step,
                 f" to step {limit}" if limit else f" for {trainer.max_epochs} epochs")

    def reads_train_scalars(self, batch_idx: int) -> bool:
        """Whether this batch's line shows the training scalars: modules log them then (`step_logging.py`)."""
        return self._enabled and (batch_idx + 1) % self.every_n_steps == 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not (trainer.is_global_zero and self.reads_train_scalars(batch_idx)):
            return
        seconds = time.perf_counter() - self._start
        log.info("epoch %d batch %d/%s step %d (%.1f s): %s", trainer.current_epoch, batch_idx + 1,
                 trainer.num_training_batches, trainer.global_step, seconds,
                 _format(trainer.callback_metrics, ("train/",)))

    def on_validation_start(self, trainer, pl_module) -> None:
        self._before_evaluation = dict(trainer.callback_metrics)

    def on_test_start(self, trainer, pl_module) -> None:
        self._before_evaluation = dict(trainer.callback_metrics)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._enabled and trainer.is_global_zero and not trainer.sanity_checking:
            log.info("epoch %d step %d validation: %s", trainer.current_epoch, trainer.global_step,
                     _format(trainer.callback_metrics, ("val/", "time/"), self._before_evaluation))

    def on_test_end(self, trainer, pl_module) -> None:
        if self._enabled and trainer.is_global_zero:
            log.info("test: %s", _format(trainer.callback_metrics, ("test/", "time/"), self._before_evaluation))

    def on_train_end(self, trainer, pl_module) -> None:
        if self._enabled and trainer.is_global_zero:
            log.info("training ended at step %d after %.1f s", trainer.global_step,
                     time.perf_counter() - (self._start or time.perf_counter()))
