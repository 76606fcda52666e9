"""SIGTERM stops a run promptly, wherever it is.

Lightning's own SIGTERM handler only sets `trainer.received_sigterm`, which its loops read between
batches: a run inside a long evaluation (an ODE likelihood, a 1000-step sampler) ignored the signal
for minutes, and a scheduler's grace period can run out first. This wraps that handler: it still
runs (Lightning's bookkeeping, its SLURM requeue), then `SIGTERMException` is raised where the
program is, so the run saves `last.ckpt`, records `interrupted` and exits 143 at once. A second
SIGTERM while that happens only sets the flag again. Ctrl-C (SIGINT) already raises at once.

On several processes Lightning's handler also broadcasts the flag from rank 0 (`torch.distributed.broadcast`,
inside the signal handler). A multi-node job that SLURM requeues or cancels gets SIGTERM on every rank while a
rank may be blocked in the gradient all-reduce, where Python runs no handler: rank 0's broadcast then waited for
it until SLURM's SIGKILL, and last.ckpt was never written. This handler does what Lightning's notifier does (set
the flag, pass the signal on to the processes Lightning started) but the broadcast, and runs the rest of
Lightning's handler (its SLURM bookkeeping, the handlers it wraps): each rank stops on its own signal.
"""
import signal
import threading

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class StopPromptlyOnSIGTERM(L.Callback):
    def __init__(self):
        self._lightning_handler = None
        self._trainer = None

    def _install(self, trainer) -> None:
        self._trainer = trainer
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        current = signal.getsignal(signal.SIGTERM)
        if getattr(current, "__self__", None) is self:
            return
        self._lightning_handler = current
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        signal.signal(signal.SIGTERM, self._lightning_handler or signal.SIG_DFL)
        trainer = self._trainer
        stopping = trainer is not None and trainer.interrupted  # already stopping (Lightning's on_exception hooks)
        if trainer is not None:  # what Lightning's notifier does, but the broadcast
            launcher = trainer.strategy.launcher
            if not trainer.received_sigterm and launcher is not None:
                launcher.kill(signum)  # the processes Lightning started (ddp on one node) get the signal too
            trainer._signal_connector.received_sigterm = True
        for handler in _without_collectives(self._lightning_handler):
            handler(signum, frame)
        if stopping:
            # A SIGTERM while the run is stopping (SLURM's, right after submitit's requeue) only sets the flag: raised,
            # it cut short run.json's `interrupted` and the last checkpoint, which were being written.
            signal.signal(signal.SIGTERM, self._handle)
            return
        raise SIGTERMException()

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread() and self._lightning_handler is not None:
            if getattr(signal.getsignal(signal.SIGTERM), "__self__", None) is self:
                signal.signal(signal.SIGTERM, self._lightning_handler)
            self._lightning_handler = None

    # Lightning sets its handler after `on_fit_start` (`Trainer._run`), before the sanity check and training: wrap it
    # there. (Installed at `on_fit_start`, this handler was the one Lightning's wrapped, and its broadcast ran first.)
    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._install(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self._install(trainer)

    def on_test_start(self, trainer, pl_module) -> None:
        self._install(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_test_end(self, trainer, pl_module) -> None:
        self._restore()

    # No restore on an exception: the handler stays while the run stops, through the other callbacks' on_exception
    # (RunRecord's `interrupted`, SaveLast's last.ckpt: Lightning calls checkpoint callbacks last), so a SIGTERM then
    # (SLURM's, right after submitit's requeue) only sets the flag. Restored there, Lightning's own handler ran and
    # broadcast the flag to ranks that had already exited: gloo's 'Connection reset by peer' replaced the requeue.
    # Lightning's teardown, right after, puts back the handlers the process had before `fit`.


def _without_collectives(handler) -> list:
    """The callables of Lightning's SIGTERM handler (a `_HandlersCompose`, or any other handler as it is), less its
    `_sigterm_notifier_fn`, which sets the flag and then broadcasts it across ranks."""
    handlers = getattr(handler, "signal_handlers", [handler])
    return [h for h in handlers if callable(h) and getattr(h, "__name__", "") != "_sigterm_notifier_fn"]
