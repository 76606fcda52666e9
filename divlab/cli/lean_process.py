"""A command's process costs beside its work, cut: start-up, memory allocation and exit.

`divlab train|eval` and `python train.py|eval.py` wrap their imports in `command_process()`, which

- pauses Python's garbage collector while the libraries import: `import lightning` imports torchmetrics, and
  through it torchvision, scipy and (where installed) transformers; with the collector on, its full collections
  over their objects took about 0.7 s of a `char_gpt` run's 5.4 s of imports on this project's 2-CPU machine;
- keeps freed memory for reuse (`keep_freed_memory`, glibc only): glibc hands each allocation above its moving
  threshold (128 KiB at first) to the kernel and takes it back when freed, so a CPU training step that allocates
  and frees the same activations every step page-faults on each (about 500 faults a `char_gpt` step);
  served from the heap and never trimmed, they are reused (a handful of faults a step), and `char_gpt`'s steps in
  the Trainer ran about 3 % faster (one thread: 300 steps in 18.4 s against 19.0 s, three alternated pairs);
- freezes every object out of the collector at exit (`atexit`), so the interpreter's teardown does not collect
  the libraries' objects one by one (1.3-1.6 s of `python -c "import lightning"`).

The Python API (`divlab.train`) leaves its caller's process as it found it.
"""
import atexit
import ctypes
import gc
import sys
from contextlib import contextmanager

# glibc's <malloc.h> parameters, and the values set: allocations below 32 MiB (glibc's largest mmap threshold)
# come from the heap, and the heap is trimmed only when 1 GiB at its top is free.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 2**30


def keep_freed_memory() -> bool:
    """On glibc, serve allocations below 32 MiB from the heap and keep what is freed for reuse; True when set.
    Elsewhere (macOS, Windows, musl) nothing changes and it returns False."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1


@contextmanager
def command_process():
    """Around a command's imports: the collector paused while they run; freed memory kept from now on; every
    object frozen out of the collector at exit."""
    keep_freed_memory()
    atexit.register(gc.freeze)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
