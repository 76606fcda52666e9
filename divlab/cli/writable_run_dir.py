"""A Hydra callback that makes sure the run's (or the sweep's) directory can be written before Hydra writes there.

Hydra creates `hydra.run.dir` itself and, when it cannot (a path under `/proc`, a read-only mount, a file in the
way), fails with a chained pathlib traceback that names neither the key nor the fix.
"""
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback


class UnwritableDirectory(SystemExit):
    """Exits with status 1, printing its message: Hydra turns an Exception raised in a callback into a warning
    and carries on, so the stop must not be one."""


def check_writable_directory(key: str, directory: str) -> None:
    """Create `directory` (as Hydra would) and write a temporary file in it, or stop with UnwritableDirectory
    naming `key`, the directory and why it cannot be used."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        where = f" at {error.filename!r}" if error.filename and str(error.filename) != str(path) else ""
        raise UnwritableDirectory(
            f"{key}={directory!r} cannot be the output directory: {error.strerror or error}{where} (nothing can be "
            f"created or written there); choose a directory you can write to, e.g. {key}=outputs/my_run, or drop "
            f"{key} for the default under paths.log_dir") from None


class WritableRunDirectory(Callback):
    """configs/hydra/default.yaml enables it: `hydra.run.dir` (a run) or `hydra.sweep.dir` (a multirun) is checked
    before Hydra creates it."""

    def on_run_start(self, config, **kwargs) -> None:
        check_writable_directory("hydra.run.dir", str(config.hydra.run.dir))

    def on_multirun_start(self, config, **kwargs) -> None:
        check_writable_directory("hydra.sweep.dir", str(config.hydra.sweep.dir))
