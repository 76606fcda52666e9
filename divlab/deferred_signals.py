"""Signals that arrive while a checkpoint is being written are handled once it is whole.

A stop or pre-emption signal whose handler raises (Ctrl-C's KeyboardInterrupt, submitit's requeue, which exits
the job) used to land wherever the main thread was. Inside `torch.save`'s file writes it broke the zip writer
mid-record, so the job died with `RuntimeError: unexpected pos …` instead of checkpointing and requeuing.
"""
import signal
import threading
from contextlib import contextmanager

# Ctrl-C, the stop signal of SLURM and most schedulers, and the two user signals SLURM and submitit send before a
# time-out or pre-emption (where the platform has them: Windows has no SIGUSR1/2).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                     if hasattr(signal, name))


@contextmanager
def signals_deferred(signals=STOP_SIGNALS):
    """Inside the block the listed signals are only recorded; leaving it restores their handlers and runs, in
    arrival order, the handler each recorded signal would have run (a raising one raises after the block, not in
    it). A signal whose action is the default one is raised again for that default action; ignored signals stay
    ignored. A block that raises restores the handlers and propagates its own error, without the handlers of what
    arrived during it. Outside the main thread, where Python cannot set handlers, the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {}
    for signum in signals:
        handler = signal.getsignal(signum)
        if handler is None or handler == signal.SIG_IGN:  # None: set outside Python; leave it alone
            continue
        previous[signum] = handler
        signal.signal(signum, lambda number, frame: received.append((number, frame)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum, frame in received:  # only when the block ended normally: its own error propagates as it is
        handler = previous[signum]
        if handler == signal.SIG_DFL:
            signal.raise_signal(signum)
        else:
            handler(signum, frame)
