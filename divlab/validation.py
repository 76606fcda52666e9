"""Early, explicit checks for constructor arguments and the composed config: every message names the value and
the fix."""
import math
from collections.abc import Iterable
from numbers import Real

# How a model config reads the top-level `divergence` (configs/model/gan.yaml: `divergence: ${divergence}`).


def check_choice(name: str, value, choices: Iterable):
    choices = sorted(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, choices))}")
    return value


def check_number(name: str, value):
    """`value` as given when it is a finite real number (not a bool, a string, NaN or ±inf)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def check_positive(name: str, value, allow_zero: bool = False):
    bound = ">= 0" if allow_zero else "> 0"
    if value is None:
        raise ValueError(f"{name} must be {bound}, got None")
    check_number(name, value)
    if value < 0 if allow_zero else value <= 0:
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None):
    """`value` as an int (a whole number given as text is accepted: `seed=7`), at least `minimum`, at most `maximum`."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return value


def optimizer_lr(optimizer, name: str = "optimizer.lr") -> float:
    """The learning rate a partial optimiser (Hydra `_partial_: true`) will use, checked > 0."""
    lr = getattr(optimizer, "keywords", {}).get("lr", 1e-3)
    return check_positive(name, lr)
