"""Stop and pre-emption signals that arrive during a training batch are handled at the next batch boundary, where
every rank of a multi-process run stops together.

A batch can hold several optimiser steps (a GAN's critic and generator steps). A signal whose handler raises
there (submitit's requeue, Ctrl-C, `StopPromptlyOnSIGTERM`) interrupted the batch between them, so `last.ckpt`
held half a step and the resumed run redid the critic step: one optimiser step more than an uninterrupted run.
Signals are deferred from the start of a training batch (`signals_deferred`) and handled at the start of the
next one, before any of its steps, or when the epoch's batches end (validation, epoch end, end of training):
points where Lightning's loop has recorded the last batch as completed, so a resumed run repeats nothing.
On one rank evaluation is never deferred, so a signal during a long evaluation still stops the run at once.

On several ranks (DDP on one or many nodes) each rank used to stop on its own signal at its own next boundary.
SLURM signals the ranks of a job one by one (or only some of them: a failed node, `kill` on one process), so a
rank could stop while another went on into the next step's gradient all-reduce: that rank then failed with gloo's
`Connection closed by peer` (the job reported failed, not requeued), or waited there until SLURM's SIGKILL and
`last.ckpt` was never written at the step reached. So at every boundary the ranks agree, with one all-reduce of a
flag (`Strategy.reduce_boolean_decision`), whether a signal reached any of them; if one did, every rank stops
there: a signalled rank runs its handlers, and a rank whose handlers did not raise (or that got no signal) raises
`SIGTERMException`, so all of them record the same step and rank 0 writes `last.ckpt` at it. Evaluation holds
collectives too (metric syncs), so on several ranks signals stay deferred through it as well, agreed on at each
validation batch and at its end: a stop waits for the evaluation callbacks of that validation (which run at its
end) to finish.
"""
import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from divlab.deferred_signals import signals_deferred


class SignalsBetweenTrainingBatches(L.Callback):
    def __init__(self):
        self._deferral = None

    def _stop_requested(self, trainer) -> bool:
        """Whether a stop signal has reached this rank since the last boundary or, on several ranks, any rank: a
        collective, so every rank asks it at the same boundaries."""
        here = self._deferral is not None and bool(self._deferral.received)
        if trainer.world_size == 1:
            return here
        return trainer.strategy.reduce_boolean_decision(here, all=False)

    def _handle_deferred(self, trainer, stop: bool) -> None:
        deferral, self._deferral = self._deferral, None
        if deferral is not None:
            deferral.__exit__(None, None, None)  # runs the handlers of what arrived; a raising one raises here
        if stop and trainer.world_size > 1:
            raise SIGTERMException()  # another rank was signalled, or this one's handlers let it go on: stop together

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._boundary(trainer, keep_deferring=True)  # the previous batch is complete; this one has taken no step

    def _boundary(self, trainer, keep_deferring: bool) -> None:
        stop = self._stop_requested(trainer)
        if self._deferral is not None and keep_deferring and not stop:
            return  # deferring since an earlier boundary and nothing has arrived: no handler to swap on this hot path
        self._handle_deferred(trainer, stop)
        if keep_deferring:
            self._deferral = signals_deferred()
            self._deferral.__enter__()

    # One rank: a signal during evaluation stops the run at once. Several: evaluation holds collectives too (metric
    # syncs), so signals stay deferred through a validation of training and the ranks agree at each of its batches
    # and at its end. (Not the sanity check, before training: `StopPromptlyOnSIGTERM` installs its handler after it.)
    def _deferring_validation(self, trainer) -> bool:
        return trainer.world_size > 1 and not trainer.sanity_checking and trainer.state.fn == "fit"

    def on_validation_start(self, trainer, pl_module) -> None:
        self._boundary(trainer, keep_deferring=self._deferring_validation(trainer))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._deferring_validation(trainer):
            self._boundary(trainer, keep_deferring=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._deferring_validation(trainer):
            self._boundary(trainer, keep_deferring=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._boundary(trainer, keep_deferring=trainer.world_size > 1)

    def on_train_end(self, trainer, pl_module) -> None:
        self._boundary(trainer, keep_deferring=False)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        deferral, self._deferral = self._deferral, None
        if deferral is not None:  # the run is already stopping with its own error: restore the handlers, run none
            deferral.__exit__(type(exception), exception, exception.__traceback__)
