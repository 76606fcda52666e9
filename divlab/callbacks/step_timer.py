"""Training speed and memory, measured where the steps run: `time/train/ms_per_step` (median over
steps after a warm-up, the device synchronised so GPU time is counted) and `memory/peak_gib`
(the CUDA allocator's peak; absent on CPU). Logged at the end of each training epoch, for benchmarks and
`scripts/gpu_check.py`: `+callbacks.step_timer._target_=divlab.callbacks.step_timer.StepTimer`."""
import statistics
import time

import lightning as L
import torch

from divlab.validation import check_positive


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Median wall time of a training step (batch to batch, optimiser included) after `warmup` steps."""

    def __init__(self, warmup: int = 5):
        self.warmup = check_positive("callbacks.step_timer.warmup", warmup, allow_zero=True)
        self.seconds: list[float] = []
        self._start = None
        self._batches = 0

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        self._batches += 1
        if self._batches > self.warmup:
            self.seconds.append(time.perf_counter() - self._start)

    def metrics(self, device: torch.device) -> dict:
        out = {}
        if self.seconds:
            out["time/train/ms_per_step"] = 1000 * statistics.median(self.seconds)
        if device.type == "cuda":
            out["memory/peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        return out

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for name, value in self.metrics(pl_module.device).items():
            pl_module.log(name, value, rank_zero_only=True)
