"""Training scalars are logged on the steps Lightning writes logs, not on every step.

`self.log` costs ~1 ms of bookkeeping per call on CPU whatever the value (Lightning moves its
result record to the value's device each call), several times the step of a 2-D toy model. Loggers
(run.json, W&B, CSV) only receive training scalars every `trainer.log_every_n_steps` steps, so
logging on those steps alone writes the same values at the same steps. What reads the latest
values between them (progress bars, the NaN guard's `train/` check) sees those of the last
logging step; automatic-optimisation losses still reach the NaN guard every step.
"""
import lightning as L


def is_logging_step(module: L.LightningModule) -> bool:
    """Whether this training step's scalars reach the loggers: Lightning's own test (`log_every_n_steps`,
    or the run stopping), every step under `fast_dev_run`, and always outside a Trainer."""
    trainer = module._trainer
    if trainer is None:
        return True
    return bool(trainer.fast_dev_run) or trainer._logger_connector.should_update_logs
