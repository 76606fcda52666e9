"""On a machine without NVIDIA's management library, ask "is CUDA available?" without retrying to load it.

`import lightning` sets `PYTORCH_NVML_BASED_CUDA_CHECK=1`, so that `torch.cuda.is_available()` asks NVML
(`libnvidia-ml.so.1`) rather than initialising CUDA before a fork. Where that library is absent (a CPU machine with
torch's CUDA build: pip's default on Linux), torch retries loading it at every call, fails, and falls back to the
CUDA runtime's count anyway. Adam and AdamW ask at every step (their graph-capture check), so each optimizer step
paid a failed `dlopen`: Trainer steps of the 2-D toy GAN (two optimizers) took 5.62 ms with it and 4.89 without,
the toy VAE's 2.97 and 2.68 (`python benchmarks/nvml_check.py` at c6d3176: medians of 5 alternated repeats of 200
steps, 2 threads, torch 2.14.1+cu130 on a 2-CPU machine without NVML).

`skip_missing_nvml()` turns the NVML-based check off only where NVML cannot be loaded: there the check's answer is
the CUDA runtime's count either way, so nothing changes but the failed load. Where NVML loads (a GPU machine),
Lightning's setting stays.
"""
import ctypes
import os
import sys

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
NVML_LIBRARY = "libnvidia-ml.so.1"  # the name torch.cuda loads


def nvml_loadable() -> bool:
    """Whether NVIDIA's management library loads in this process (on Linux; elsewhere assumed to)."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return False
    return True


def skip_missing_nvml() -> bool:
    """Let `torch.cuda.is_available()` skip NVML where the NVML-based check is on and NVML cannot load; returns
    whether it did."""
    if os.environ.get(NVML_CHECK) != "1" or nvml_loadable():
        return False
    os.environ[NVML_CHECK] = "0"
    return True
