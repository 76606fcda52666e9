"""How a run ends: its record's status, W&B closed, and the exit code a scheduler reads, in one context manager."""
import logging
import signal
import sys
from contextlib import contextmanager

from lightning.pytorch.utilities.exceptions import SIGTERMException

from divlab.tracking.run_record import RunRecord, status_for

log = logging.getLogger("divlab.train")
# The conventional exit status of a process stopped by a signal: 128 + the signal's number.
EXIT_SIGTERM, EXIT_SIGINT = 128 + signal.SIGTERM, 128 + signal.SIGINT


@contextmanager
def recorded_exit(record: RunRecord, trainer=None, close_wandb: bool = False):
    """Run the body; on any exception, record the attempt's status (unless the record's callback already did) and
    leave as a stopped process would: 143 after SIGTERM (Lightning's own handling, or `trainer.received_sigterm`),
    130 after Ctrl-C (Lightning's graceful Ctrl-C exits 1). Any other exit keeps its code: submitit's requeue after
    pre-emption is a SystemExit its executor reads. With `close_wandb`, the W&B run is closed either way."""
    failed = True
    try:
        yield
        failed = False
    except BaseException as error:
        if record.attempt["finished_at"] is None:
            record.finish(status_for(error), reason=str(error) or type(error).__name__)
        if isinstance(error, SIGTERMException) or getattr(trainer, "received_sigterm", False):
            raise SystemExit(EXIT_SIGTERM) from error
        if isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt):
            raise SystemExit(EXIT_SIGINT) from error
        raise
    finally:
        if close_wandb:
            finish_wandb(exit_code=1 if failed else 0)


def finish_wandb(exit_code: int = 0) -> None:
    """Close the W&B run, so the next job of a multirun starts its own. A run that is stopping keeps its own exit:
    when a scheduler's SIGTERM has already ended W&B's service process, closing fails with ConnectionResetError,
    which replaced the stop (exit 143, no submitit result) with an error (a failed job for the launcher, though
    SLURM had requeued it)."""
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        try:
            sys.modules["wandb"].finish(exit_code=exit_code)
        except ConnectionError as error:
            if exit_code == 0:
                raise
            log.warning("W&B's service is gone (%s); its offline run keeps what it wrote", error)
