"""The callbacks and loggers a config asks for, as `train` and `eval` pass them to the Trainer."""
import hydra
from omegaconf import DictConfig

from divlab.callbacks.evaluation_rng import EvaluationRandomStream


def callbacks_and_loggers(cfg: DictConfig, seed: int | None) -> tuple[list, list]:
    """Instantiate `cfg.callbacks` and `cfg.logger`. Only callback entries with a `_target_` are built: with
    `callbacks=none`, an experiment's tuning of a callback is all that is left of it. First of all comes
    `EvaluationRandomStream`, which every run has: validation and test draw from a stream seeded by `seed` (the
    run's; None: 0), not from training's."""
    callbacks = [EvaluationRandomStream(seed or 0)]
    callbacks += [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return callbacks, loggers
