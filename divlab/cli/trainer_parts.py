"""The callbacks and loggers a config asks for, the ones every run has, and the Trainer they go into."""
import os
from pathlib import Path

import hydra
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from divlab.callbacks.evaluation_rng import EvaluationRandomStream
from divlab.callbacks.periodic import check_monitors_are_logged
from divlab.callbacks.prompt_stop import StopPromptlyOnSIGTERM
from divlab.callbacks.rank_noise import DistinctNoisePerRank
from divlab.callbacks.whole_steps import SignalsBetweenTrainingBatches
from divlab.checkpoints import AtomicCheckpointIO, SaveLast, remove_stale_temporaries
from divlab.cuda_availability import skip_missing_nvml
from divlab.tracking.run_record import RunRecord
from divlab.tracking.wandb_logger import GlobalStepWandbLogger

# The callbacks every training run has, whatever its config says, in the Trainer's order (the printed config tree
# lists them under `callbacks (always on)`). RunRecord is the run's own record (run.json).
ALWAYS_ON_CALLBACKS = {
    "EvaluationRandomStream": "validation and test draw from a stream seeded by the run's seed, not training's",
    "RunRecord": "run.json: config, status, metrics, history and checkpoints of every attempt",
    "SignalsBetweenTrainingBatches": "a signal stops the run between training steps, never inside one",
    "DistinctNoisePerRank": "each DDP rank draws its own training noise",
    "SaveLast": "checkpoints/last.ckpt at every validation, epoch end and stop (not with "
                "trainer.enable_checkpointing=false)",
    "StopPromptlyOnSIGTERM": "SIGTERM stops the run at once; last, so the others record and save first",
}


def callbacks_and_loggers(cfg: DictConfig, seed: int | None) -> tuple[list, list]:
    """Instantiate `cfg.callbacks` and `cfg.logger`. Only callback entries with a `_target_` are built: with
    `callbacks=none`, an experiment's tuning of a callback is all that is left of it. First of all comes
    `EvaluationRandomStream`, which every run has: validation and test draw from a stream seeded by `seed` (the
    run's; None: 0), not from training's."""
    callbacks = [EvaluationRandomStream(seed or 0)]
    callbacks += [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return callbacks, loggers


def build_trainer(cfg: DictConfig, model, record: RunRecord, resume_step: int | None, config: dict):
    """The Trainer of a training run: the config's callbacks and loggers with the always-on ones added (in
    `ALWAYS_ON_CALLBACKS`' order), atomic checkpoint writes, and the config logged to every logger. Checkpoint
    monitors are checked before training, and temporaries a killed run left are removed before its first write.
    Returns (trainer, the config's ModelCheckpoint or None). On a machine without NVML, the optimizers' per-step
    CUDA check stops retrying to load it (`divlab/cuda_availability.py`)."""
    skip_missing_nvml()
    callbacks, loggers = callbacks_and_loggers(cfg, cfg.get("seed"))
    if cfg.get("train", True):
        check_monitors_are_logged(callbacks, model)
    model_checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    last_dir = (model_checkpoint.dirpath if model_checkpoint is not None and model_checkpoint.dirpath
                else os.path.realpath(Path(cfg.paths.output_dir) / "checkpoints"))
    if rank_zero_only.rank == 0:  # before any write of this run: what is there is a killed run's
        remove_stale_temporaries(Path(last_dir))
    callbacks += [record, SignalsBetweenTrainingBatches(), DistinctNoisePerRank()]
    if cfg.trainer.get("enable_checkpointing", True):  # trainer.enable_checkpointing=false: no checkpoints at all
        callbacks.append(SaveLast(last_dir))
    callbacks.append(StopPromptlyOnSIGTERM())  # last: its handler stays while the others' on_exception record and save
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=[*loggers, record.logger],
                                      plugins=[AtomicCheckpointIO()])
    for logger in loggers:
        logger.log_hyperparams(config)
        if isinstance(logger, GlobalStepWandbLogger):
            logger.key_steps_by(trainer, resume_step, record.record["history"])
    return trainer, model_checkpoint
