"""Training-step overhead: the Lightning Trainer vs a plain PyTorch loop over the same module and batch.

    python benchmarks/overhead.py [--cases vae gan ...] [--steps 30] [--repeats 10] [--out REC.json]

For each case (benchmarks/cases/<name>.py exposing make_case()), alternates R repeats of
S Trainer steps and S plain steps on copies of the same module and batch, and prints the median
time per step of each and their ratio (goal ≤ 1.03, or the case's own `goal`: ≤ 1.3 for the 2-D toy
models). The record keeps every repeat's pair: the page judges the mean ratio against the goal by the two-SE rule
(a ratio a few hundredths from its goal moves across it between runs of this shared machine).
The Trainer logs every `log_every_n_steps` steps as configs/trainer/default.yaml sets it.
The case's data loader is timed alone too, to show it is not what limits training. `--out` writes the rows with
the command, commit, machine and date: a record the performance page shows (`overhead/<name>` block).
"""
import argparse
import copy
import importlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/overhead.py` from the repo root

import lightning as L  # noqa: E402
import torch  # noqa: E402

from benchmarks.provenance import Provenance  # noqa: E402
from divlab.cuda_availability import skip_missing_nvml  # noqa: E402
from divlab.run_files import write_json_atomic  # noqa: E402
from divlab.tracking.benchmark_tables import overhead_ratio  # noqa: E402
from divlab.tracking.verdict import against_goal  # noqa: E402

LOG_EVERY_N_STEPS = 20  # configs/trainer/default.yaml
DEFAULT_GOAL = 1.03
# Every module of benchmarks/cases/ that defines make_case() (`experiment.py` holds the helpers they share).
CASES = sorted(p.stem for p in (Path(__file__).parent / "cases").glob("*.py") if "def make_case(" in p.read_text())


class StepTimer(L.Callback):
    """Wall time from the first timed batch's start to the last batch's end."""

    def __init__(self, warmup: int):
        self.warmup = warmup

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


class RepeatedBatch(torch.utils.data.Dataset):
    """The same batch, n times: the Trainer sees exactly the data the plain loop sees."""

    def __init__(self, batch, n: int):
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        return self.batch


def as_list(optimizers) -> list:
    """The optimisers `configure_optimizers` returned, in order, from any of Lightning's forms (one, a list, a
    tuple of lists, or {"optimizer": ..., "lr_scheduler": ...} dicts)."""
    optimizers = optimizers[0] if isinstance(optimizers, tuple) and isinstance(optimizers[0], list) else optimizers
    optimizers = list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]
    return [config["optimizer"] if isinstance(config, dict) else config for config in optimizers]


def time_lightning(case: dict, steps: int, warmup: int) -> float:
    module = copy.deepcopy(case["module"])
    timer = StepTimer(warmup)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer],
        log_every_n_steps=LOG_EVERY_N_STEPS,
    )
    loader = torch.utils.data.DataLoader(RepeatedBatch(case["batch"], warmup + steps), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return (timer.end - timer.start) / steps


def time_plain(case: dict, steps: int, warmup: int) -> float:
    module = copy.deepcopy(case["module"])
    module.train()
    optimizers = as_list(module.configure_optimizers())
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        case["plain_step"](module, optimizers, case["batch"])
    return (time.perf_counter() - start) / steps


def time_loader(case: dict, batches: int) -> float | None:
    datamodule = case.get("datamodule")
    if datamodule is None:
        return None
    iterator = iter(datamodule.train_dataloader())
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - start) / batches


def run_case(name: str, steps: int, warmup: int, repeats: int) -> dict:
    case = importlib.import_module(f"benchmarks.cases.{name}").make_case()
    lightning, plain = [], []
    for _ in range(repeats):
        lightning.append(time_lightning(case, steps, warmup))
        plain.append(time_plain(case, steps, warmup))
    ratios = [a / b for a, b in zip(lightning, plain)]
    return {
        "case": case["name"],
        "plain_ms": 1e3 * statistics.median(plain),
        "lightning_ms": 1e3 * statistics.median(lightning),
        "ratio": statistics.median(ratios),
        # each repeat's pair, for the page's mean ± SE of the ratio and its two-SE verdict against the goal
        "plain_ms_repeats": [1e3 * t for t in plain],
        "lightning_ms_repeats": [1e3 * t for t in lightning],
        "goal": case.get("goal", DEFAULT_GOAL),
        "loader_ms": (lambda t: None if t is None else 1e3 * t)(time_loader(case, steps)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also write the rows to this JSON record")
    args = parser.parse_args()
    started = Provenance.now(__file__, None)
    skip_missing_nvml()  # as a divlab run's process does (divlab/cuda_availability.py): both arms alike
    torch.manual_seed(0)
    rows = []
    print(f"{'case':32s} {'plain ms/step':>14s} {'Trainer ms/step':>16s} {'ratio (mean ± SE)':>18s} "
          f"{'loader ms/batch':>16s}  verdict")
    for name in args.cases:
        r = run_case(name, args.steps, args.warmup, args.repeats)
        rows.append(r)
        loader = "-" if r["loader_ms"] is None else f"{r['loader_ms']:.2f}"
        ratio = overhead_ratio(r)
        print(f"{r['case']:32s} {r['plain_ms']:14.2f} {r['lightning_ms']:16.2f} {ratio.text():>18s} {loader:>16s}  "
              f"{against_goal(ratio, r['goal'], at_least=False)} of ≤ {r['goal']:g}", flush=True)
    if args.out:
        write_json_atomic(args.out, {**started.finished(torch.get_num_threads()), "steps": args.steps,
                                     "warmup": args.warmup, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
