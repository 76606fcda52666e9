"""Early, explicit checks for constructor arguments and the composed config: every message names the value and the fix."""
import math
from collections.abc import Iterable
from numbers import Real

from omegaconf import DictConfig, OmegaConf

# How a model config reads the top-level `divergence` (configs/model/gan.yaml: `divergence: ${divergence}`).
READS_DIVERGENCE = "${divergence}"


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


def check_int(name: str, value, minimum: int | None = None):
    """`value` as an int (a whole number given as text is accepted: `seed=7`), at least `minimum`."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def optimizer_lr(optimizer, name: str = "optimizer.lr") -> float:
    """The learning rate a partial optimiser (Hydra `_partial_: true`) will use, checked > 0."""
    lr = getattr(optimizer, "keywords", {}).get("lr", 1e-3)
    return check_positive(name, lr)


def divergence_readers() -> dict[str, list[str]]:
    """The model configs that read the top-level `divergence`, and the names each accepts."""
    from divlab.lightning_modules.alignment_objectives import PREFERENCE_LOSSES
    from divlab.lightning_modules.divergences import DIVERGENCES

    return {"gan": sorted(DIVERGENCES), "dpo": sorted(PREFERENCE_LOSSES)}


def check_divergence_is_read(cfg: DictConfig) -> None:
    """A top-level `divergence=` must be read by the chosen model (its config says `${divergence}`), never ignored.

    Families whose objective is fixed (the VAE's ELBO, the AR model's likelihood) or chosen by their own keys
    (DDPM: model.target and model.loss) do not read it, so a run of one with a divergence fails here.
    """
    divergence = cfg.get("divergence")
    model = cfg.get("model")
    if divergence is None or model is None or _mentions(OmegaConf.to_container(model, resolve=False), READS_DIVERGENCE):
        return
    readers = "; ".join(f"model={name}: {', '.join(values)}" for name, values in divergence_readers().items())
    raise ValueError(f"divergence={divergence!r} is not read by the model {model.get('_target_')}, which would ignore "
                     f"it; the models that read it and their divergences: {readers}. Drop divergence= (null) or "
                     "choose one of those models")


def _mentions(node, text: str) -> bool:
    """Whether any string in a nested container of dicts and lists contains `text`."""
    if isinstance(node, dict):
        return any(_mentions(value, text) for value in node.values())
    if isinstance(node, list):
        return any(_mentions(value, text) for value in node)
    return isinstance(node, str) and text in node
