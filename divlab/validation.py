"""Early, explicit checks for constructor arguments: every message names the value and the fix."""
from collections.abc import Iterable


def check_choice(name: str, value, choices: Iterable):
    choices = sorted(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, choices))}")
    return value


def check_positive(name: str, value, allow_zero: bool = False):
    if value is None or (value < 0 if allow_zero else value <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def optimizer_lr(optimizer) -> float:
    """The learning rate a partial optimiser (Hydra `_partial_: true`) will use, checked > 0."""
    lr = getattr(optimizer, "keywords", {}).get("lr", 1e-3)
    return check_positive("optimizer.lr", lr)
