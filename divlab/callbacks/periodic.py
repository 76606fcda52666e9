"""What every evaluation callback shares: when to run, seeded sampling, timing, logging once.

Heavy evaluations run on rank 0 only (on samples it draws itself) and are logged with
`rank_zero_only=True`, so DDP runs neither duplicate the work nor the log lines.

Samples are drawn from the callback's own seed, so the same weights give the same samples: a callback asked
again for as many samples from weights it has just sampled (the test of a fit whose best checkpoint is its
last, after that epoch's validation) reuses them instead of drawing them again (`PeriodicEvaluation.samples`).
"""
import difflib
import hashlib
import math
import time
from contextlib import contextmanager

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from divlab.callbacks.evaluation_rng import seeded_stream
from divlab.eval_mode import eval_mode
from divlab.lightning_modules.contracts import FamilyModule, GenerativeModule
from divlab.validation import check_positive


@torch.no_grad()
def seeded_samples(pl_module: GenerativeModule, n: int, seed: int, batch_size: int = 1000) -> torch.Tensor:
    """`pl_module.sample` in eval mode, in batches, from a fixed seed that leaves the training RNG untouched."""
    with eval_mode(pl_module), seeded_stream(seed, pl_module.device):
        return torch.cat([pl_module.sample(min(batch_size, n - start)).float().cpu()
                          for start in range(0, n, batch_size)])


def weights_digest(module: torch.nn.Module) -> str:
    """A hash of every entry of `module.state_dict()` (names and bytes): equal digests, equal weights."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def validation_due(trainer, every_n_epochs: int | None) -> bool:
    """Whether this validation epoch is one of every `every_n_epochs` (the 1st-based epoch divides it), never
    during the sanity check, and never when `every_n_epochs` is None (an evaluation at test only)."""
    return (every_n_epochs is not None and not trainer.sanity_checking
            and (trainer.current_epoch + 1) % every_n_epochs == 0)


def check_cadence_is_validated(trainer, name: str, every_n_epochs: int) -> None:
    """Refuse, before training, an evaluation due every `every_n_epochs` > 1 epochs when validation runs only every
    `trainer.check_val_every_n_epoch` epochs and the one is not a multiple of the other: most epochs where it is due
    would have no validation to run in, and it would silently run less often than configured (or never).
    `every_n_epochs=1` is "at every validation", whatever the validation cadence."""
    every_validation = getattr(trainer, "check_val_every_n_epoch", None)
    if (isinstance(every_validation, int) and every_validation > 1 and every_n_epochs > 1
            and every_n_epochs % every_validation):
        nearest = math.ceil(every_n_epochs / every_validation) * every_validation
        raise ValueError(
            f"callbacks.{name}.every_n_epochs={every_n_epochs} is not a multiple of trainer.check_val_every_n_epoch="
            f"{every_validation}, so most epochs where it is due have no validation: set it to a multiple of "
            f"{every_validation} (e.g. {nearest}) or trainer.check_val_every_n_epoch to a divisor of {every_n_epochs}")


# divlab's config names of the callbacks that watch a validation metric every validation
MONITOR_CONFIG_NAMES = {"ModelCheckpoint": "model_checkpoint", "EarlyStopping": "early_stopping"}


def check_monitors_see_every_validation(trainer, name: str, every_n_epochs: int | None, logs_metric) -> None:
    """Refuse, before training, a checkpoint or early stop that monitors `val/<name>` where `logs_metric(name)` says
    this callback logs it, when it logs it only every `every_n_epochs` > 1 validations or never (None: at test only):
    Lightning raises at the first validation without it, after an epoch of training and before any checkpoint."""
    if every_n_epochs == 1:
        return
    when = "only at test" if every_n_epochs is None else f"only every {every_n_epochs} epochs"
    for callback in trainer.callbacks:
        monitor = getattr(callback, "monitor", None)
        config_name = MONITOR_CONFIG_NAMES.get(type(callback).__name__)
        if config_name and monitor and monitor.startswith("val/") and logs_metric(monitor.removeprefix("val/")):
            raise ValueError(
                f"callbacks.{config_name}.monitor={monitor!r} is logged by callbacks.{name} {when} "
                f"(callbacks.{name}.every_n_epochs={every_n_epochs}), so validations in "
                f"between would have nothing to compare: monitor a metric of every validation (e.g. val/loss) or "
                f"set callbacks.{name}.every_n_epochs=1")


def check_monitors_are_logged(callbacks: list, pl_module) -> None:
    """Refuse, before training, a checkpoint or early stop monitoring a `val/` metric that neither the model (its
    `FamilyModule.validation_metrics`) nor a callback (its `logs_metric`) logs, e.g. the typo `val/nlll`: Lightning
    raises only at the first validation, after an epoch of training. A model that is no `FamilyModule` is not
    checked; a callback's `metric_names`, where it has them, only help suggest the closest name."""
    if not isinstance(pl_module, FamilyModule):
        return
    declared = pl_module.validation_metrics
    loggers = [c for c in callbacks if callable(getattr(c, "logs_metric", None))]
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        config_name = MONITOR_CONFIG_NAMES.get(type(callback).__name__)
        if not (config_name and isinstance(monitor, str) and monitor.startswith("val/")):
            continue
        name = monitor.removeprefix("val/")
        if name in declared or any(c.logs_metric(name) for c in loggers):
            continue
        model_metrics = ", ".join(f"val/{n}" for n in declared) or "nothing"
        others = ", ".join(sorted({getattr(c, "name", None) or type(c).__name__ for c in loggers}))
        known = [*declared, *(n for c in loggers for n in getattr(c, "metric_names", ()))]
        close = difflib.get_close_matches(monitor, [f"val/{n}" for n in known], n=1)
        raise ValueError(
            f"callbacks.{config_name}.monitor={monitor!r} is logged by nothing in this run: the model "
            f"({type(pl_module).__name__}) logs {model_metrics} at every validation"
            + (f", and the callbacks {others} log their own val/ metrics" if others else "")
            + f"; set callbacks.{config_name}.monitor to one of them"
            + (f" (did you mean {close[0]}?)" if close else "")
            + f", or callbacks.{config_name}.monitor=null")


class Timer:
    """Wall times of named steps: `with timer("fid"): ...` → {"fid": seconds}."""

    def __init__(self):
        self.seconds = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class PeriodicEvaluation(L.Callback):
    """Runs `evaluate(trainer, pl_module, split, timer) -> {name: value}` every `every_n_epochs`
    validation epochs (None: never, an evaluation at test only) and once at test, on rank 0, and logs
    `<split>/<name>` plus each timed step as `time/<split>/<step>_seconds`. Subclasses say whether they
    apply with `applies(datamodule, pl_module)`.
    """

    def __init__(self, every_n_epochs: int | None = 1, seed: int = 0, name: str = "evaluation"):
        self.every_n_epochs = (None if every_n_epochs is None
                               else check_positive(f"callbacks.{name}.every_n_epochs", every_n_epochs))
        self.seed = seed
        self.name = name
        self._skip_noticed = False
        self._last_samples = None  # ((n, batch_size, weights digest), samples)

    def applies(self, datamodule, pl_module) -> bool | str:
        """True, or why to skip: a one-line reason (printed once) or "" (skip silently)."""
        raise NotImplementedError

    def logs_metric(self, name: str) -> bool:
        """Whether this callback logs `<split>/<name>` (checked against checkpoint monitors)."""
        return False

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            # only where it will run: a toy-data callback left in an alignment run's defaults has no cadence to meet
            applies = self.applies(getattr(trainer, "datamodule", None), pl_module) is True
            if self.every_n_epochs is not None and applies:
                check_cadence_is_validated(trainer, self.name, self.every_n_epochs)
            check_monitors_see_every_validation(trainer, self.name, self.every_n_epochs, self.logs_metric)

    def evaluate(self, trainer, pl_module, split: str, timer: Timer) -> dict:
        raise NotImplementedError

    def samples(self, pl_module, n: int, batch_size: int = 1000) -> torch.Tensor:
        """`seeded_samples` from this callback's seed; the previous call's samples when it asked for as many from
        the same weights (sampling is a function of seed and weights, so reusing them changes no number)."""
        key = (n, batch_size, weights_digest(pl_module))
        if self._last_samples is None or self._last_samples[0] != key:
            self._last_samples = (key, seeded_samples(pl_module, n, self.seed, batch_size))
        else:
            rank_zero_info(f"{type(self).__name__}: the same weights as its last evaluation; reusing its {n} samples")
        return self._last_samples[1]

    def _applies(self, trainer, pl_module) -> bool:
        verdict = self.applies(trainer.datamodule, pl_module)
        if verdict is not True:
            if not self._skip_noticed and verdict:
                rank_zero_info(f"{type(self).__name__}: {verdict}; skipped")
            self._skip_noticed = True
            return False
        return True

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if validation_due(trainer, self.every_n_epochs):
            self.run(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.run(trainer, pl_module, "test")

    def run(self, trainer, pl_module, split: str) -> dict:
        if not self._applies(trainer, pl_module) or not trainer.is_global_zero:
            return {}
        timer = Timer()
        metrics = {f"{split}/{name}": value for name, value in self.evaluate(trainer, pl_module, split, timer).items()}
        metrics.update({f"time/{split}/{step}_seconds": seconds for step, seconds in timer.seconds.items()})
        for name, value in metrics.items():
            pl_module.log(name, float(value), rank_zero_only=True, on_step=False, on_epoch=True)
        return metrics
