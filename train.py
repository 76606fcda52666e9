"""Train one generative model: compose config → instantiate data, model, callbacks, loggers → fit → test."""
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from divlab.checkpoints import check_readable, resolve_ckpt_path
from divlab.tracking.run_record import RunRecord, read_run_record, status_for

log = logging.getLogger("divlab.train")


def describe_run(cfg: DictConfig, datamodule, model) -> None:
    """Fill `cfg.run` (group, tags) from what was built, so loggers can interpolate it."""
    family, divergence = model.hparams.get("family"), model.hparams.get("divergence")
    with open_dict(cfg):
        cfg.run.group = cfg.run.group or cfg.experiment_name or f"{family}-{divergence}-{datamodule.name}"
        cfg.run.tags = [*cfg.tags, f"family:{family}", f"divergence:{divergence}", f"data:{datamodule.name}",
                        f"seed:{cfg.seed}"]


def run(cfg: DictConfig) -> dict:
    """Train and/or test as `cfg` says; returns the final metrics. Writes everything under `paths.output_dir`."""
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))

    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model, data_shape=tuple(datamodule.sample_shape), _convert_="all")
    describe_run(cfg, datamodule, model)

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir, Path(cfg.paths.log_dir), cfg.run.group)
    if ckpt_path is not None:
        check_readable(ckpt_path)
        previous = read_run_record(ckpt_path.parent.parent) or {}
        with open_dict(cfg):
            cfg.run.wandb_id = cfg.run.wandb_id or (previous.get("wandb") or {}).get("id")
        log.info("resuming from %s", ckpt_path)

    config = OmegaConf.to_container(cfg, resolve=True)
    record = RunRecord(str(output_dir), config=config, seed=cfg.get("seed"))
    # Only entries with a _target_: with callbacks=none, an experiment's tuning of a callback is all that is left of it.
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    callbacks += [record]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    if not loggers:
        callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.LearningRateMonitor)]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(config)

    try:
        if cfg.get("train", True):
            trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=False)
        if trainer.interrupted:
            record.finish("interrupted")
            return dict(record.record["metrics"])
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        record.finish("completed")
    except BaseException as error:
        record.finish(status_for(error))
        raise
    finally:
        finish_wandb()
    return dict(record.record["metrics"])


def finish_wandb() -> None:
    """Close the W&B run, so the next job of a multirun starts its own."""
    import sys

    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)
    objective = cfg.get("optimized_metric")
    return metrics.get(objective) if objective else None


if __name__ == "__main__":
    main()
