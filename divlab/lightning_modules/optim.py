"""Optimiser construction shared by every family."""
import inspect
import math

import torch

# Devices where torch's Adam, AdamW, SGD and Adagrad have a fused implementation: one kernel updates every parameter.
FUSED_DEVICES = ("cuda", "cpu")


def make_optimizer(optimizer, params, module) -> torch.optim.Optimizer:
    """Call a partial optimiser (Hydra `_partial_: true`) on `params` of `module` (a LightningModule), fused on CUDA
    and CPU where the optimiser has a fused implementation and the config chooses no implementation itself (`fused`
    or `foreach`). On a CPU torch's default is a loop over the parameters; the fused step computes the same update
    (to float rounding) in one kernel, which shows at small models such as `char_gpt`, where the optimiser is a
    sizeable share of a step. Not under Lightning's mixed precision (`16-mixed`, `bf16-mixed`): its gradient
    clipping refuses an optimiser that unscales gradients inside its step, as fused ones do; torch's default there."""
    func = getattr(optimizer, "func", optimizer)
    chosen = getattr(optimizer, "keywords", {}) or {}
    fused = (module.device.type in FUSED_DEVICES and "fused" in inspect.signature(func).parameters
             and not {"fused", "foreach"} & set(chosen) and not under_mixed_precision(module))
    return optimizer(params, **({"fused": True} if fused else {}))


def under_mixed_precision(module) -> bool:
    """Whether `module`'s Trainer runs Lightning's mixed-precision plugin (False before a Trainer is attached)."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    trainer = getattr(module, "_trainer", None)
    return trainer is not None and isinstance(trainer.precision_plugin, MixedPrecision)


def with_scheduler(optimizer: torch.optim.Optimizer, scheduler=None):
    """What `configure_optimizers` returns: the optimiser alone, or with a partial scheduler (Hydra
    `_partial_: true`, e.g. CosineAnnealingLR with T_max in steps) called on it and stepped every step."""
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler(optimizer), "interval": "step"}}


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_lr_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """The rate × (s + 1)/(w + 1) for steps s < w = `warmup_steps` (a linear warm-up), then a cosine from the rate
    at s = w down to `min_lr_ratio` × the rate at s = `total_steps`, and that floor after: nanoGPT's schedule
    (`get_lr` in its train.py), as a partial scheduler for `with_scheduler`. A run shorter than the warm-up
    (`trainer.max_steps=30` for a quick look) warms up throughout, as nanoGPT's does."""
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(f"model.scheduler.warmup_steps={warmup_steps} must be >= 0 and total_steps={total_steps} "
                         ">= 1")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if step >= total_steps:
            return min_lr_ratio
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        return min_lr_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
