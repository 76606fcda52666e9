"""The CUDA check's cost on a machine without NVML: Trainer steps with Lightning's NVML-based check on and off.

    python benchmarks/nvml_check.py [--cases gan_toy vae_toy] [--steps 200] [--repeats 5]

`import lightning` sets PYTORCH_NVML_BASED_CUDA_CHECK=1; where NVIDIA's management library is absent, every
`torch.cuda.is_available()` then retries loading it, and Adam/AdamW ask at every step. divlab turns the check off
there (`divlab/cuda_availability.py`). For each case (benchmarks/cases/<name>.py), alternates R repeats of S Trainer
steps with the check on and off, and prints the median time per step of each and the median ratio. Where NVML
loads, it says so and measures nothing: divlab leaves the check on there.
"""
import argparse
import importlib
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/nvml_check.py` from the repo root

import torch  # noqa: E402

from benchmarks.overhead import time_lightning  # noqa: E402
from divlab.cuda_availability import NVML_CHECK, nvml_loadable  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["gan_toy", "vae_toy"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if nvml_loadable():
        print("NVML loads on this machine: divlab keeps the NVML-based check here, so there is nothing to compare")
        return 0
    torch.manual_seed(0)
    print(f"{'case':28s} {'check on (ms/step)':>19s} {'check off (ms/step)':>20s} {'on ÷ off':>9s}")
    for name in args.cases:
        case = importlib.import_module(f"benchmarks.cases.{name}").make_case()
        times = {"1": [], "0": []}
        for _ in range(args.repeats):
            for setting in times:
                os.environ[NVML_CHECK] = setting
                times[setting].append(time_lightning(case, args.steps, args.steps // 10))
        ratio = statistics.median(on / off for on, off in zip(times["1"], times["0"]))
        print(f"{case['name']:28s} {1e3 * statistics.median(times['1']):19.2f} "
              f"{1e3 * statistics.median(times['0']):20.2f} {ratio:9.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
