"""Write a file or build a directory so that readers see the old version or the whole new one, never a part:
write beside the target under a temporary name, then rename over it (a rename within a directory is atomic).
A kill mid-write leaves the old file whole; concurrent writers (DDP ranks, parallel jobs) never share a
temporary name."""
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def temporaries(directory, pattern: str = "*") -> list[Path]:
    """The temporary files `atomic_write` left in `directory` for targets named like `pattern` (a glob): a write
    killed with SIGKILL (or a power cut) leaves its `.<name>.<random>.tmp` behind."""
    return sorted(Path(directory).glob(f".{pattern}.*{TEMPORARY_SUFFIX}"))


@contextmanager
def atomic_write(path, mode: str = "wb", fsync: bool = False):
    """`with atomic_write(path) as file: ...` writes `file` to a temporary sibling and renames it to `path` when
    the block ends without error (mode 0666 & ~umask, as `open` would create it); on error nothing changes.
    `fsync`: flush to disk before the rename, so the new file also survives a power cut."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, mode) as file:
            yield file
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_write(path, "wb") as file:
        file.write(data)


def write_text_atomic(path, text: str) -> None:
    with atomic_write(path, "w") as file:
        file.write(text)


@contextmanager
def atomic_directory(path):
    """`with atomic_directory(path) as tmp: ...` fills `tmp`, a temporary sibling of `path`, and renames it to
    `path` when the block ends without error. When `path` appeared meanwhile (another process built it first),
    the first build is kept and this one is discarded; on error the partial build is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.build-"))
    try:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
