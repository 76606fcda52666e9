"""Exponential moving average of the weights: Lightning's EMAWeightAveraging with two fixes.

1. It pickles, so it crosses `ddp_spawn` (Lightning's holds a closure from `torch.optim.swa_utils`).
2. Evaluating a checkpoint (`trainer.test(ckpt_path=...)`) evaluates the averaged weights that the
   checkpoint's `state_dict` holds; Lightning's callback would reload the raw training weights.
"""
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch.optim.swa_utils import get_ema_avg_fn


class EMA(EMAWeightAveraging):
    def __init__(self, decay: float = 0.999, **kwargs: Any) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"callbacks.ema.decay must be in (0, 1), got {decay}")
        super().__init__(decay=decay, **kwargs)
        self.decay = decay

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_kwargs"] = {key: value for key, value in self._kwargs.items() if key != "avg_fn"}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._kwargs["avg_fn"] = get_ema_avg_fn(decay=self.decay)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        # Otherwise the module already holds checkpoint["state_dict"]: the averaged weights.
