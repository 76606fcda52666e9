"""char_gpt through divlab's Trainer vs a nanoGPT-style plain loop: tokens per second, side by side.

    python benchmarks/char_gpt_vs_plain.py [--iters 200] [--repeats 3] [--accelerator auto|cpu|gpu] [--compile]
        [--precision 32-true|bf16-mixed]
    python benchmarks/char_gpt_vs_plain.py --whole-run [--repeats 1 | --seeds 0 1 2] [--precision 32-true|bf16-mixed]

Steps: both train fresh copies of the same module (the char_gpt experiment's GPT, AdamW and cosine schedule)
on the same pre-drawn batches of divlab's character-level Shakespeare data, alternated `--repeats`
times. The plain loop is written the way nanoGPT's train.py is: forward, backward, optimizer step,
schedule step, `loss.item()` every `log_every_n_steps` iterations. Prints the median tokens/s of each,
their ratio (goal: the Trainer within 10 % of the plain loop) and the final training loss of each.
Like for like: both arms always run at the same settings.
--compile: both copies have their backbone compiled, as `model.compile=true` does (`torch.compile`, compiled at
the first step, which the warm-up excludes).
--precision bf16-mixed: the Trainer's copy under Lightning's bf16 autocast (`trainer.precision=bf16-mixed`; on a CPU
with AVX-512 BF16 or AMX its matrix products run in bfloat16), the plain loop's forward under the same
`torch.autocast(dtype=torch.bfloat16)`, as nanoGPT runs bf16.

--whole-run: the whole of `python train.py experiment=char_gpt` (setup, 2,000 steps, its validations, checkpoints,
samples and test; W&B off) against a whole nanoGPT-style run of the same model, data and recipe written the way
nanoGPT's train.py runs its CPU command (`--eval_iters=20`, `eval_interval` 250: the loss on 20 random batches of
each split at iteration 0 and every 250, a checkpoint of model and optimizer whenever that val estimate improves),
alternated `--repeats` times on one device, or once per seed of `--seeds` (divlab's `seed=`, and the plain run's
torch seed before it builds its model). Prints the wall time of each and their ratio (goal ≤ 1.05), and both
models' loss on the same 2,400 validation windows (divlab's `test/loss`; the plain model scored on them after its
run, untimed), with their means over the repeats.
"""
import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from the repo root

import lightning as L
import torch

from benchmarks.cases.experiment import experiment_case
from benchmarks.overhead import StepTimer
from divlab.datamodules.text import RandomWindows

WARMUP = 5


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LastLoss(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss = outputs["loss"] if isinstance(outputs, dict) else outputs


class SynchronizedStepTimer(StepTimer):
    """StepTimer that waits for the device's queued work at both ends."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            synchronize(pl_module.device)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def time_trainer(module, batches, accelerator: str, log_every: int, compile: bool = False,
                 precision: str = "32-true") -> tuple[float, float]:
    module = copy.deepcopy(module)
    if compile:
        module.backbone.compile()  # what AutoregressiveModel.build does with model.compile=true
    timer, last = SynchronizedStepTimer(WARMUP), LastLoss()
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, precision=precision, max_steps=len(batches), max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        log_every_n_steps=log_every, callbacks=[timer, last],
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return (timer.end - timer.start) / (len(batches) - WARMUP), float(last.loss)


def optimizer_and_schedule(model) -> tuple:
    """The module's own AdamW and per-step cosine schedule, as the Trainer would build them."""
    configured = model.configure_optimizers()
    return configured["optimizer"], configured["lr_scheduler"]["scheduler"]


def plain_step(model, optimizer, scheduler, x: torch.Tensor, precision: str = "32-true") -> torch.Tensor:
    """One nanoGPT-style iteration: forward (under bf16 autocast for `bf16-mixed`, as the Trainer's), backward,
    optimizer step, schedule step; returns the loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        loss = -model.token_log_likelihoods(x).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss


def time_plain(module, batches, device: torch.device, log_every: int, compile: bool = False,
               precision: str = "32-true") -> tuple[float, float]:
    model = copy.deepcopy(module).to(device)
    if compile:
        model.backbone.compile()
    model.train()
    optimizer, scheduler = optimizer_and_schedule(model)
    for it, x in enumerate(batches):
        if it == WARMUP:
            synchronize(device)
            start = time.perf_counter()
        loss = plain_step(model, optimizer, scheduler, x.to(device, non_blocking=True), precision)
        if it % log_every == 0:
            loss.item()
    synchronize(device)
    return (time.perf_counter() - start) / (len(batches) - WARMUP), float(loss)


EVAL_INTERVAL, EVAL_ITERS = 250, 20  # nanoGPT's shakespeare_char config and its README's CPU command


@torch.no_grad()
def window_loss(model, batches) -> float:
    """Mean next-token loss (nats/token) over `batches`, as nanoGPT's estimate_loss takes it."""
    model.eval()
    losses = [(-model.token_log_likelihoods(x).mean()).item() for x in batches]
    model.train()
    return sum(losses) / len(losses)


def nanogpt_style_run(max_steps: int, checkpoint: Path, seed: int = 0, precision: str = "32-true"):
    """A whole nanoGPT-style run (see the module docstring); returns (wall seconds, model, datamodule)."""
    start = time.perf_counter()
    torch.manual_seed(seed)  # nanoGPT seeds torch once, before building its model
    case = experiment_case("char_gpt", "char_gpt", plain_step=None)
    model, data = case["module"], case["datamodule"]
    model.build(data.vocab_size)
    model.train()
    optimizer, scheduler = optimizer_and_schedule(model)
    train_batches = iter(data.train_dataloader())
    batch_size = data.hparams.batch_size

    def random_batches(split: str) -> list:  # nanoGPT's get_batch: random windows of the split
        windows = RandomWindows(data.tokens[split], data.block_size, EVAL_ITERS * batch_size)
        return [windows.__getitems__(list(range(i * batch_size, (i + 1) * batch_size))) for i in range(EVAL_ITERS)]

    best = float("inf")
    for it in range(max_steps + 1):
        if it % EVAL_INTERVAL == 0:
            losses = {split: window_loss(model, random_batches(split)) for split in ("train", "val")}
            if losses["val"] < best and it > 0:
                best = losses["val"]
                torch.save(
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter_num": it}, checkpoint
                )
        if it == max_steps:
            break
        try:
            x = next(train_batches)
        except StopIteration:
            train_batches = iter(data.train_dataloader())
            x = next(train_batches)
        plain_step(model, optimizer, scheduler, x, precision).item()  # .item(): nanoGPT's log_interval=1 (CPU command)
    return time.perf_counter() - start, model, data


def whole_runs(seeds: list[int], precision: str = "32-true") -> None:
    from divlab import train

    divlab_s, plain_s, divlab_losses, plain_losses = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat, seed in enumerate(seeds):
            start = time.perf_counter()
            run = train(["experiment=char_gpt", "logger=none", f"trainer.precision={precision}", f"seed={seed}",
                         f"hydra.run.dir={tmp}/divlab{repeat}"])
            divlab_s.append(time.perf_counter() - start)
            divlab_loss = run.metrics["test/loss"]
            seconds, model, data = nanogpt_style_run(2000, Path(tmp) / "plain.pt", seed, precision)
            plain_s.append(seconds)
            test = data.dataset("test")
            plain_loss = window_loss(model, [test.__getitems__(list(range(i, min(i + 200, len(test)))))
                                             for i in range(0, len(test), 200)])
            divlab_losses.append(divlab_loss)
            plain_losses.append(plain_loss)
            print(
                f"repeat {repeat}, seed {seed}: divlab {divlab_s[-1]:.1f} s, test/loss {divlab_loss:.4f}; "
                f"nanoGPT-style {plain_s[-1]:.1f} s, loss on the same {len(test)} windows {plain_loss:.4f}",
                flush=True,
            )
    ratio = statistics.median(d / p for d, p in zip(divlab_s, plain_s))
    print(f"whole run, divlab / nanoGPT-style wall time: {ratio:.3f} (goal ≤ 1.05)")

    def spread(v):
        return f" ± {statistics.stdev(v):.4f}" if len(v) > 1 else ""

    print(f"loss on the validation windows, mean over {len(seeds)}: divlab {statistics.mean(divlab_losses):.4f}"
          f"{spread(divlab_losses)}, nanoGPT-style {statistics.mean(plain_losses):.4f}{spread(plain_losses)} "
          "(goal: divlab's ≤ the plain loop's)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="--whole-run: one repeat per seed (default: --repeats repeats at seed 0)")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--whole-run", action="store_true", help="whole runs with evaluation, not steps alone")
    parser.add_argument("--compile", action="store_true", help="compile both arms' backbone (model.compile=true)")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"],
                        help="both arms' precision (trainer.precision; the plain loop under the same autocast)")
    args = parser.parse_args()
    if args.whole_run:
        return whole_runs(args.seeds or [0] * args.repeats, args.precision)
    if args.iters <= WARMUP:
        parser.error(f"--iters must exceed the {WARMUP} warm-up iterations, got {args.iters}")
    torch.manual_seed(0)
    case = experiment_case("char_gpt", "char_gpt", plain_step=None)
    module, data = case["module"], case["datamodule"]
    module.build(data.vocab_size)  # what the Trainer's configure_model does, so both copies start equal
    batches, loader = [], iter(data.train_dataloader())
    while len(batches) < args.iters:
        batches.append(next(loader))
    gpu = args.accelerator == "gpu" or (args.accelerator == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if gpu else "cpu")
    log_every = 50  # configs/experiment/char_gpt.yaml
    tokens_per_step = batches[0].numel()
    trainer_s, plain_s, losses = [], [], {}
    for _ in range(args.repeats):
        seconds, losses["Trainer"] = time_trainer(module, batches, "gpu" if gpu else "cpu", log_every, args.compile,
                                                  args.precision)
        trainer_s.append(seconds)
        seconds, losses["plain loop"] = time_plain(module, batches, device, log_every, args.compile, args.precision)
        plain_s.append(seconds)
    ratios = [p / t for t, p in zip(trainer_s, plain_s)]
    print(f"char_gpt, batch {tuple(batches[0].shape)}, {args.iters} iterations, {args.repeats} alternated repeats, "
          f"{device.type}, both arms {args.precision}" + (", both backbones compiled" if args.compile else ""))
    for name, seconds in (("plain loop", plain_s), ("Trainer", trainer_s)):
        print(f"{name:12s} {tokens_per_step / statistics.median(seconds):10.0f} tokens/s "
              f"({1e3 * statistics.median(seconds):.2f} ms/step), final train loss {losses[name]:.4f}")
    ratio = statistics.median(ratios)
    print(f"Trainer / plain tokens/s: {ratio:.3f}" + ("" if ratio >= 1 / 1.10 else "  (more than 10 % slower)"))


if __name__ == "__main__":
    main()
