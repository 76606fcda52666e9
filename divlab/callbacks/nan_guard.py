"""Stop a run whose losses or weights stop being finite, before a NaN checkpoint replaces a good one."""
from pathlib import Path

import lightning as L
import torch


class NonFiniteError(RuntimeError):
    """A loss or a weight became NaN or infinite."""


class NonFiniteGuard(L.Callback):
    """Checks every training step's loss and logged `train/` scalars, and the weights before each checkpoint
    event (validation end, epoch end, train end: checkpoint callbacks run after this one). On a non-finite value
    it raises NonFiniteError: the run is recorded `failed` with the reason, exits non-zero, and its checkpoints
    keep the last finite state."""

    def __init__(self, check_weights_every_n_steps: int = 0):
        # 0: weights only before checkpoint events; n: also every n training steps.
        self.every_n_steps = int(check_weights_every_n_steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        values = {"loss": loss} if isinstance(loss, torch.Tensor) else {}
        values.update((name, value) for name, value in trainer.callback_metrics.items() if name.startswith("train/"))
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1 and not torch.isfinite(value.detach()).item():
                self._stop(trainer, f"{name} = {value.item()}")
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._check_weights(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._check_weights(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check_weights(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._check_weights(trainer, pl_module)

    def _check_weights(self, trainer, pl_module) -> None:
        for name, param in pl_module.named_parameters():
            if not torch.isfinite(param.detach()).all():
                self._stop(trainer, f"weight {name} has non-finite entries")

    @staticmethod
    def _stop(trainer, what: str) -> None:
        saved = saved_checkpoints(trainer)
        kept = (f"keeping the last finite checkpoint ({saved[0]})" if saved else
                "with no checkpoint written yet (none exists to keep or to resume from)")
        raise NonFiniteError(
            f"non-finite values at global step {trainer.global_step} (epoch {trainer.current_epoch}): {what}; "
            f"stopped, {kept}. Lower the learning rate or check the divergence's "
            "numerics (disable this check with ~callbacks.nan_guard)"
        )


def saved_checkpoints(trainer) -> list[Path]:
    """The checkpoint files in the directories of the trainer's checkpoint callbacks, newest first (those of an
    earlier attempt of a resumed run included): all finite, since this guard runs before every checkpoint event."""
    directories = {Path(d) for d in (getattr(c, "dirpath", None) or getattr(getattr(c, "path", None), "parent", None)
                                     for c in trainer.checkpoint_callbacks) if d}
    files = [p for d in directories if d.is_dir() for p in d.glob("*.ckpt")]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)
