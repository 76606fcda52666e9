"""Stop and pre-emption signals that arrive during a training batch are handled at the next batch boundary.

A batch can hold several optimiser steps (a GAN's critic and generator steps). A signal whose handler raises
there (submitit's requeue, Ctrl-C, `StopPromptlyOnSIGTERM`) interrupted the batch between them, so `last.ckpt`
held half a step and the resumed run redid the critic step: one optimiser step more than an uninterrupted run.
Signals are deferred from the start of a training batch (`signals_deferred`) and handled at the start of the
next one, before any of its steps, or when the epoch's batches end (validation, epoch end, end of training):
points where Lightning's loop has recorded the last batch as completed, so a resumed run repeats nothing.
Evaluation is never deferred, so a signal during a long evaluation still stops the run at once.
"""
import lightning as L

from divlab.deferred_signals import signals_deferred


class SignalsBetweenTrainingBatches(L.Callback):
    def __init__(self):
        self._deferral = None

    def _handle_deferred(self, error: BaseException | None = None) -> None:
        deferral, self._deferral = self._deferral, None
        if deferral is None:
            return
        if error is None:
            deferral.__exit__(None, None, None)  # runs the handlers of what arrived; a raising one raises here
        else:  # the run is already stopping with its own error: restore the handlers, run none
            deferral.__exit__(type(error), error, error.__traceback__)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._deferral is not None and not self._deferral.received:
            return  # deferring since an earlier batch and nothing has arrived: no handler to swap on this hot path
        self._handle_deferred()  # the previous batch is complete; this one has taken no step yet
        self._deferral = signals_deferred()
        self._deferral.__enter__()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._handle_deferred()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._handle_deferred()

    def on_train_end(self, trainer, pl_module) -> None:
        self._handle_deferred()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._handle_deferred(exception)
