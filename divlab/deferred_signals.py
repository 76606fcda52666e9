"""Signals that arrive while a checkpoint is being written are handled once it is whole.

A stop or pre-emption signal whose handler raises (Ctrl-C's KeyboardInterrupt, submitit's requeue, which exits
the job) used to land wherever the main thread was. Inside `torch.save`'s file writes it broke the zip writer
mid-record, so the job died with `RuntimeError: unexpected pos …` instead of checkpointing and requeuing.
"""
import signal
import threading

# Ctrl-C, the stop signal of SLURM and most schedulers, and the two user signals SLURM and submitit send before a
# time-out or pre-emption (where the platform has them: Windows has no SIGUSR1/2).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                     if hasattr(signal, name))


class signals_deferred:  # noqa: N801 (used as `with signals_deferred(): ...`, like contextlib's helpers)
    """Inside the block the listed signals are only recorded (in `received`); leaving it restores their handlers and
    runs, in arrival order, the handler each recorded signal would have run (a raising one raises after the block,
    not in it). A signal whose action is the default one is raised again for that default action; ignored signals
    stay ignored. A block that raises restores the handlers and propagates its own error, without the handlers of
    what arrived during it. Outside the main thread, where Python cannot set handlers, the block runs as it is.
    """

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = signals
        self.received = []
        self._previous = {}

    def __enter__(self) -> "signals_deferred":
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signals:
            handler = signal.getsignal(signum)
            if handler is None or handler == signal.SIG_IGN:  # None: set outside Python; leave it alone
                continue
            self._previous[signum] = handler
            signal.signal(signum, lambda number, frame: self.received.append((number, frame)))
        return self

    def __exit__(self, error_type, error, traceback) -> bool:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if error_type is None:  # only when the block ended normally: its own error propagates as it is
            for signum, frame in self.received:
                handler = self._previous[signum]
                if handler == signal.SIG_DFL:
                    signal.raise_signal(signum)
                else:
                    handler(signum, frame)
        return False
