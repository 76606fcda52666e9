"""Optimiser construction shared by every family."""
import inspect

import torch


def make_optimizer(optimizer, params, device: torch.device) -> torch.optim.Optimizer:
    """Call a partial optimiser (Hydra `_partial_: true`) on `params`, fused on CUDA when supported."""
    func = getattr(optimizer, "func", optimizer)
    fused = device.type == "cuda" and "fused" in inspect.signature(func).parameters
    return optimizer(params, **({"fused": True} if fused else {}))
