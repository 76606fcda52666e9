"""char_gpt through divlab's Trainer vs a nanoGPT-style plain loop: tokens per second, side by side.

    python benchmarks/char_gpt_vs_plain.py [--iters 200] [--repeats 3] [--accelerator auto|cpu|gpu]

Both train fresh copies of the same module (the char_gpt experiment's GPT, AdamW and cosine schedule)
on the same pre-drawn batches of divlab's character-level Shakespeare data, alternated `--repeats`
times. The plain loop is written the way nanoGPT's train.py is: forward, backward, optimizer step,
schedule step, `loss.item()` every `log_every_n_steps` iterations. Prints the median tokens/s of each,
their ratio (goal: the Trainer within 10 % of the plain loop) and the final training loss of each.
"""
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from the repo root

import lightning as L
import torch

from benchmarks.cases.experiment import experiment_case
from benchmarks.overhead import StepTimer

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


def time_trainer(module, batches, accelerator: str, log_every: int) -> tuple[float, float]:
    module = copy.deepcopy(module)
    timer, last = SynchronizedStepTimer(WARMUP), LastLoss()
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, max_steps=len(batches), max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        log_every_n_steps=log_every, callbacks=[timer, last],
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return (timer.end - timer.start) / (len(batches) - WARMUP), float(last.loss)


def time_plain(module, batches, device: torch.device, log_every: int) -> tuple[float, float]:
    model = copy.deepcopy(module).to(device)
    model.train()
    configured = model.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    for it, x in enumerate(batches):
        if it == WARMUP:
            synchronize(device)
            start = time.perf_counter()
        x = x.to(device, non_blocking=True)
        loss = -model.token_log_likelihoods(x).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if it % log_every == 0:
            loss.item()
    synchronize(device)
    return (time.perf_counter() - start) / (len(batches) - WARMUP), float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    args = parser.parse_args()
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
        seconds, losses["Trainer"] = time_trainer(module, batches, "gpu" if gpu else "cpu", log_every)
        trainer_s.append(seconds)
        seconds, losses["plain loop"] = time_plain(module, batches, device, log_every)
        plain_s.append(seconds)
    ratios = [p / t for t, p in zip(trainer_s, plain_s)]
    print(f"char_gpt, batch {tuple(batches[0].shape)}, {args.iters} iterations, {args.repeats} alternated repeats, "
          f"{device.type}")
    for name, seconds in (("plain loop", plain_s), ("Trainer", trainer_s)):
        print(f"{name:12s} {tokens_per_step / statistics.median(seconds):10.0f} tokens/s "
              f"({1e3 * statistics.median(seconds):.2f} ms/step), final train loss {losses[name]:.4f}")
    ratio = statistics.median(ratios)
    print(f"Trainer / plain tokens/s: {ratio:.3f}" + ("" if ratio >= 1 / 1.10 else "  (more than 10 % slower)"))


if __name__ == "__main__":
    main()
