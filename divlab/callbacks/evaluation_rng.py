"""Validation and test draw from their own random stream, never from training's.

What an evaluation draws at random (a GAN's or VAE's validation noise, the likelihood callback's importance
samples, Hutchinson probes and dequantisation noise, the sample logger's latents) used to come from the global
stream that training draws from, so how often a run validated changed the training that followed, and the same
weights scored differently at each validation, at test and under `divlab eval`. Every validation and test pass
(the sanity check too) now runs inside Lightning's `isolate_rng` (the torch CPU and CUDA, NumPy and Python states
saved on entry and restored on exit), seeded on entry from (run seed, rank) alone: the same at every pass, so a
metric moves only when the weights do, and training continues exactly as if no evaluation had run.

One draw happens before the first hook: the DataLoader iterator's base seed, which PyTorch takes from the global
stream unless the loader has its own generator. The evaluation loaders carry one (`evaluation_loader_generator`,
`divlab/datamodules/tensor_data.py`).
"""
import random
from contextlib import ExitStack, contextmanager

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.seed import isolate_rng

from divlab.callbacks.rank_noise import rank_seed


def seed_everything_quietly(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), NumPy and Python's `random`, without Lightning's log line or its
    `PL_GLOBAL_SEED` environment variable (which worker processes would read as the run's seed)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextmanager
def seeded_stream(seed: int, device: torch.device):
    """Draw from torch's global stream seeded with `seed` (CPU, and `device` when it is a GPU), then put the stream
    back as it was: an evaluation step that must not shift the draws of the steps around it."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class EvaluationRandomStream(L.Callback):
    """Put first among the callbacks, so that its `on_*_start` runs before any other's and its `on_*_end` after
    every evaluation hook that draws (those run in `on_*_batch_end` and `on_*_epoch_end`)."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._isolation: ExitStack | None = None

    def _enter(self, trainer) -> None:
        self._exit()
        self._isolation = ExitStack()
        self._isolation.enter_context(isolate_rng())
        seed_everything_quietly(rank_seed(self.seed, trainer.global_rank))

    def _exit(self) -> None:
        isolation, self._isolation = self._isolation, None
        if isolation is not None:
            isolation.close()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._enter(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._exit()

    def on_test_start(self, trainer, pl_module) -> None:
        self._enter(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._exit()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._exit()
