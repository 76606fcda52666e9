"""Training scalars are logged on the steps something reads them, not on every step.

`self.log` costs ~1 ms of bookkeeping per call on CPU whatever the value (Lightning moves its
result record to the value's device each call), several times the step of a 2-D toy model. Loggers
(run.json, W&B, CSV) receive training scalars only every `trainer.log_every_n_steps` steps, so
logging on those steps writes the same values at the same steps. The last batch of each epoch logs
too, so what reads the final values (a checkpoint monitoring `train/...`, `trainer.logged_metrics`)
sees the last step's, and so do the steps a callback reports on (`reads_train_scalars`, e.g. the
progress log lines). What reads the latest values on other steps (Rich's bar, the NaN guard's
`train/` check) sees those of the last logging step; automatic-optimisation losses still reach the
NaN guard every step, and the weights are checked before every checkpoint.
"""
import lightning as L


def is_logging_step(module: L.LightningModule, batch_idx: int) -> bool:
    """Whether this training step logs: always outside a Trainer and under `fast_dev_run`; else on Lightning's
    logging steps (`log_every_n_steps`, or the run stopping), the epoch's last batch, and the batches a callback's
    `reads_train_scalars(batch_idx)` asks for."""
    trainer = module._trainer
    if trainer is None or trainer.fast_dev_run or trainer.is_last_batch:
        return True
    if trainer._logger_connector.should_update_logs:
        return True
    return any(callback.reads_train_scalars(batch_idx) for callback in trainer.callbacks
               if hasattr(callback, "reads_train_scalars"))
