"""divlab's char GPT against nanoGPT's own, unmodified train.py: the comparison a user choosing between them makes.

    python benchmarks/char_gpt_vs_nanogpt.py --nanogpt PATH [--steps 400] [--repeats 2] [--threads 1] [--seed 0]
        [--compile] [--device cpu|cuda] [--precision float32|bf16] [--out benchmarks/results/char_gpt_vs_nanogpt.json]

PATH is a checkout of github.com/karpathy/nanoGPT (its code is run from there, never copied into divlab); without
one the benchmark says so and exits 0. Both arms train on exactly divlab's Shakespeare texts and split: nanoGPT's
`train.bin`/`val.bin`/`meta.pkl` are written from divlab's character-level tokens (train: divlab's training texts;
val: its held-out texts, every `val_every`-th work) into a temporary working directory, which nanoGPT's train.py
runs in (its `configurator.py` linked there, unmodified).

Each repeat runs both, alternated, as separate processes with the same interpreter, torch and `--threads`:

- nanoGPT: `train.py config/train_shakespeare_char.py` with its README's CPU sizes (`--device=cpu --compile=False
  --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
  --dropout=0.0`), `--max_iters=--lr_decay_iters=STEPS`, `--always_save_checkpoint=True` (so its checkpoint
  holds the model after STEPS steps) and its config's own `eval_interval` (250) where that divides STEPS, as at
  2,000 steps, else `--eval_interval=STEPS` (at 400: 250 would leave the last checkpoint at step 250); float32
  (nanoGPT runs float32 on a CPU whatever `dtype`). At 2,000 steps each arm then scores 4,320 windows in all:
  nanoGPT 9 evaluations of 20 batches of 12 on each split, divlab 8 validations of 240 and a test of 2,400;
- divlab: `python train.py experiment=char_gpt trainer.max_steps=STEPS logger=none`, float32, eager.

`--compile`: both arms compiled, as each tool offers it (nanoGPT `--compile=True`, divlab `model.compile=true`),
a row of its own: the goals are set for eager float32 runs on a CPU. Compilation falls in the first steps, outside
the per-step medians, and inside the whole run. `--device cuda` runs both on the GPU (nanoGPT `--device=cuda`, divlab
`trainer.accelerator=gpu`), and `--precision bf16` runs both in bf16 autocast (nanoGPT `--dtype=bfloat16`, divlab
`trainer.precision=bf16-mixed`), on CUDA only: nanoGPT trains in float32 on a CPU whatever its dtype.

Measured: ms per training step (nanoGPT: the median of its printed per-iteration times past the first 5; divlab:
the median time per step between consecutive progress lines of its train.log (their logging time stamps, to the
millisecond), one every 10 steps, so an interval
holding a validation does not set it), tokens/s (12 × 64 tokens a step), the whole run's wall time from process
start to exit, and the
held-out loss after STEPS steps **scored the same way for both**: the mean next-character loss (nats) on divlab's
2,400 fixed test windows of 64 characters, every position but the first (each model given the real prefix; divlab
would otherwise predict the first character from BOS, which nanoGPT never does).
"""
import argparse
import importlib.util
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.provenance import Provenance  # noqa: E402
from divlab.tracking.benchmark_tables import tables  # noqa: E402

BATCH, BLOCK, WARMUP = 12, 64, 5
DATASET = "divlab_shakespeare_char"
NANOGPT_CONFIG = "config/train_shakespeare_char.py"
NANOGPT_SIZES = ["--eval_iters=20", "--log_interval=1", f"--block_size={BLOCK}",
                 f"--batch_size={BATCH}", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0"]
# --precision → (nanoGPT's --dtype, divlab's trainer.precision); --device → divlab's trainer.accelerator
PRECISIONS = {"float32": ("float32", "32-true"), "bf16": ("bfloat16", "bf16-mixed")}
ACCELERATORS = {"cpu": "cpu", "cuda": "gpu"}
NANOGPT_ITER = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", re.MULTILINE)
# A progress line of divlab's train.log: the logging time stamp (to the millisecond) and the step it reports.
DIVLAB_PROGRESS = re.compile(r"^\[([\d-]+ [\d:]+,\d+)\]\[divlab\.progress\]\[INFO\] - [^\n]*?step (\d+) \(",
                             re.MULTILINE)


def nanogpt_checkout(path: Path | None) -> Path | None:
    """The checkout when it holds nanoGPT's train.py, model.py, configurator.py and its char config."""
    needed = ("train.py", "model.py", "configurator.py", NANOGPT_CONFIG)
    if path is None or not all((path / name).is_file() for name in needed):
        return None
    return path


def divlab_text_data():
    """divlab's character-level Shakespeare datamodule at char_gpt's settings, loaded."""
    from benchmarks.cases.experiment import experiment_case

    return experiment_case("char_gpt", "char_gpt", plain_step=None)["datamodule"]


def write_nanogpt_data(data, folder: Path) -> None:
    """nanoGPT's prepared-data files from divlab's tokens: uint16 train/val ids and the vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        np.asarray(data.tokens[split], dtype=np.uint16).tofile(folder / f"{split}.bin")
    itos = {i: data.decode([i]) for i in range(data.vocab_size)}
    with (folder / "meta.pkl").open("wb") as f:
        pickle.dump({"vocab_size": data.vocab_size, "itos": itos, "stoi": {c: i for i, c in itos.items()}}, f)


def thread_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def nanogpt_eval_interval(checkout: Path, steps: int) -> int:
    """The char config's own `eval_interval` where it divides `steps` (the last evaluation, and so the checkpoint,
    falls on the last step), else `steps`."""
    found = re.search(r"^eval_interval\s*=\s*(\d+)", (checkout / NANOGPT_CONFIG).read_text(), re.MULTILINE)
    interval = int(found.group(1)) if found else steps
    return interval if steps % interval == 0 else steps


def run_nanogpt(checkout: Path, workdir: Path, steps: int, threads: int, out: str, compile: bool = False,
                device: str = "cpu", precision: str = "float32") -> dict:
    eval_interval = nanogpt_eval_interval(checkout, steps)
    command = [sys.executable, str(checkout / "train.py"), str(checkout / NANOGPT_CONFIG), *NANOGPT_SIZES,
               f"--compile={compile}", f"--device={device}", f"--dtype={PRECISIONS[precision][0]}",
               f"--max_iters={steps}", f"--lr_decay_iters={steps}", f"--eval_interval={eval_interval}",
               "--always_save_checkpoint=True", f"--dataset={DATASET}", f"--out_dir={out}"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=thread_env(threads), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"nanoGPT's train.py failed ({result.returncode}):\n{result.stderr[-2000:]}")
    times = [float(ms) for it, ms in NANOGPT_ITER.findall(result.stdout) if int(it) >= WARMUP]
    return {"wall_s": wall, "ms_per_step": statistics.median(times), "eval_interval": eval_interval,
            "checkpoint": str(workdir / out / "ckpt.pt")}


def run_divlab(run_dir: Path, steps: int, threads: int, seed: int, compile: bool = False, device: str = "cpu",
               precision: str = "float32") -> dict:
    command = [sys.executable, str(ROOT / "train.py"), "experiment=char_gpt", f"trainer.max_steps={steps}",
               "logger=none", f"seed={seed}", f"hydra.run.dir={run_dir}", "callbacks.progress_bar.every_n_steps=10",
               f"model.compile={str(compile).lower()}", f"trainer.accelerator={ACCELERATORS[device]}",
               f"trainer.precision={PRECISIONS[precision][1]}"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=thread_env(threads), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"divlab's train.py failed ({result.returncode}):\n{result.stderr[-2000:]}")
    marks = [(int(step), datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp())
             for stamp, step in DIVLAB_PROGRESS.findall((run_dir / "train.log").read_text())]
    per_step = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(marks, marks[1:]) if s1 > s0]
    return {"wall_s": wall, "ms_per_step": 1e3 * statistics.median(per_step), "run_dir": str(run_dir)}


@torch.no_grad()
def heldout_loss(next_token_losses, windows: torch.Tensor, batch: int = 200) -> float:
    """Mean loss over every position but the first of every window; `next_token_losses(x)` gives [B, T-1]."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        losses = next_token_losses(windows[i:i + batch])
        total, count = total + losses.sum().item(), count + losses.numel()
    return total / count


def divlab_losses(run_dir: str):
    from divlab import load_run

    model = load_run(run_dir).model
    return lambda x: -model.token_log_likelihoods(x)[:, 1:]


def nanogpt_losses(checkout: Path, checkpoint: str):
    spec = importlib.util.spec_from_file_location("nanogpt_model", checkout / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)  # nanoGPT's own file, written just now
    model = module.GPT(module.GPTConfig(**saved["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in saved["model"].items()})
    model.eval()

    def losses(x):
        inputs, targets = x[:, :-1].contiguous(), x[:, 1:].contiguous()
        logits, _ = model(inputs, targets)  # with targets, nanoGPT returns logits at every position
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")

    return losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, help="a checkout of karpathy/nanoGPT")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="both arms torch.compile their model")
    parser.add_argument("--device", choices=sorted(ACCELERATORS), default="cpu")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="float32",
                        help="both arms: nanoGPT's --dtype, divlab's trainer.precision (bf16: on CUDA only)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/char_gpt_vs_nanogpt.json")
    args = parser.parse_args(argv)
    if args.precision != "float32" and args.device == "cpu":
        parser.error(f"--precision {args.precision} needs --device cuda: nanoGPT trains in float32 on a CPU whatever "
                     "its --dtype, so a CPU has no like-for-like bf16 comparison")
    started = Provenance.now(__file__, argv)
    checkout = nanogpt_checkout(args.nanogpt.resolve() if args.nanogpt else None)  # runs from a temporary dir
    if checkout is None:
        print(f"skipped: --nanogpt {args.nanogpt} is not a nanoGPT checkout (needs train.py, model.py, "
              "configurator.py, config/train_shakespeare_char.py); `git clone https://github.com/karpathy/nanoGPT`")
        return 0
    torch.set_num_threads(args.threads)
    data = divlab_text_data()
    test = data.dataset("test")
    windows = test.__getitems__(list(range(len(test))))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        write_nanogpt_data(data, workdir / "data" / DATASET)
        (workdir / "configurator.py").symlink_to(checkout / "configurator.py")
        for repeat in range(args.repeats):
            nano = run_nanogpt(checkout, workdir, args.steps, args.threads, f"out{repeat}", args.compile,
                               args.device, args.precision)
            nano["heldout_loss"] = heldout_loss(nanogpt_losses(checkout, nano.pop("checkpoint")), windows)
            ours = run_divlab(workdir / f"divlab{repeat}", args.steps, args.threads, args.seed, args.compile,
                              args.device, args.precision)
            ours["heldout_loss"] = heldout_loss(divlab_losses(ours.pop("run_dir")), windows)
            rows.append({"repeat": repeat, "nanogpt": nano, "divlab": ours})
            print(f"repeat {repeat}: nanoGPT {nano['ms_per_step']:.1f} ms/step, {nano['wall_s']:.1f} s, loss "
                  f"{nano['heldout_loss']:.4f} | divlab {ours['ms_per_step']:.1f} ms/step, {ours['wall_s']:.1f} s, "
                  f"loss {ours['heldout_loss']:.4f}", flush=True)
    median = lambda arm, key: statistics.median(r[arm][key] for r in rows)  # noqa: E731
    tokens = BATCH * BLOCK
    summary = {
        **started.finished(args.threads),
        "steps": args.steps, "repeats": args.repeats, "device": args.device, "precision": args.precision,
        "compile": args.compile,
        "tokens_per_step": tokens, "windows": len(windows),
        "nanogpt_tokens_per_s": 1e3 * tokens / median("nanogpt", "ms_per_step"),
        "divlab_tokens_per_s": 1e3 * tokens / median("divlab", "ms_per_step"),
        "wall_ratio_divlab_over_nanogpt": median("divlab", "wall_s") / median("nanogpt", "wall_s"),
        "loss_gap_divlab_minus_nanogpt": median("divlab", "heldout_loss") - median("nanogpt", "heldout_loss"),
        "rows": rows,
    }
    summary["tokens_per_s_ratio"] = summary["divlab_tokens_per_s"] / summary["nanogpt_tokens_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(tables("char_gpt_vs_nanogpt", summary))
    print(f"divlab / nanoGPT tokens/s: {summary['tokens_per_s_ratio']:.3f} (goal ≥ 1.10); whole-run wall "
          f"{summary['wall_ratio_divlab_over_nanogpt']:.3f} (goal ≤ 1.0); held-out loss gap "
          f"{summary['loss_gap_divlab_minus_nanogpt']:+.4f} nats (goal ≤ +0.01); written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
