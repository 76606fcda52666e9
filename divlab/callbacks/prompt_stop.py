"""SIGTERM stops a run promptly, wherever it is.

Lightning's own SIGTERM handler only sets `trainer.received_sigterm`, which its loops read between
batches: a run inside a long evaluation (an ODE likelihood, a 1000-step sampler) ignored the signal
for minutes, and a scheduler's grace period can run out first. This wraps that handler: it still
runs (Lightning's bookkeeping, its SLURM requeue), then `SIGTERMException` is raised where the
program is, so the run saves `last.ckpt`, records `interrupted` and exits 143 at once. A second
SIGTERM while that happens only sets the flag again. Ctrl-C (SIGINT) already raises at once.
"""
import signal
import threading

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class StopPromptlyOnSIGTERM(L.Callback):
    def __init__(self):
        self._lightning_handler = None

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        current = signal.getsignal(signal.SIGTERM)
        if getattr(current, "__self__", None) is self:
            return
        self._lightning_handler = current
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        signal.signal(signal.SIGTERM, self._lightning_handler or signal.SIG_DFL)
        if callable(self._lightning_handler):
            self._lightning_handler(signum, frame)
        raise SIGTERMException()

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread() and self._lightning_handler is not None:
            if getattr(signal.getsignal(signal.SIGTERM), "__self__", None) is self:
                signal.signal(signal.SIGTERM, self._lightning_handler)
            self._lightning_handler = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._install()

    def on_test_start(self, trainer, pl_module) -> None:
        self._install()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_test_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()
