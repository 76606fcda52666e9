"""Optimiser construction shared by every family."""
import inspect

import torch


def make_optimizer(optimizer, params, device: torch.device) -> torch.optim.Optimizer:
    """Call a partial optimiser (Hydra `_partial_: true`) on `params`, fused on CUDA when supported."""
    func = getattr(optimizer, "func", optimizer)
    fused = device.type == "cuda" and "fused" in inspect.signature(func).parameters
    return optimizer(params, **({"fused": True} if fused else {}))


def with_scheduler(optimizer: torch.optim.Optimizer, scheduler=None):
    """What `configure_optimizers` returns: the optimiser alone, or with a partial scheduler (Hydra
    `_partial_: true`, e.g. CosineAnnealingLR with T_max in steps) called on it and stepped every step."""
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler(optimizer), "interval": "step"}}
