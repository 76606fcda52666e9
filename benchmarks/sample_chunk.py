"""Sampling with the network run in chunks (`model.sample_chunk`) against the whole batch at once, side by side.

    python -m benchmarks.sample_chunk [--experiment ddpm_fashion_mnist] [--n 500] [--chunks 0 32 64 128 256]
                                      [--steps 10] [--repeats 3]

Builds the preset's diffusion module with fresh weights (a network call costs the same whatever they are) and
`--steps` sampler steps, then draws `--n` samples from one seed with each chunk size (0: the whole batch, the
config's null), alternated `--repeats` times. Prints the median milliseconds per sample, the speed-up over the
whole batch and the largest difference from the whole batch's samples: the samplers draw their noise for the
whole batch, so chunking may change only float rounding.
"""
import argparse
import statistics

import torch
from hydra import compose, initialize_config_dir

from benchmarks.ddim_vs_ddpm import timed
from divlab.callbacks.periodic import seeded_samples
from divlab.config_dir import config_dir
from divlab.saved_runs import build_data_and_model


def build(experiment: str, steps: int):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"model.sample_steps={steps}"])
    _, module = build_data_and_model(cfg.data, cfg.model)
    return module.eval()


def timed_samples(module, n: int, rows: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    module.hparams.sample_chunk = rows or None
    return timed(lambda: seeded_samples(module, n, seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="ddpm_fashion_mnist")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 32, 64, 128, 256])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    module = build(args.experiment, args.steps)
    chunks = [0] + [rows for rows in args.chunks if rows]
    seconds = {rows: [] for rows in chunks}
    whole = None
    difference = dict.fromkeys(chunks, 0.0)
    for _ in range(args.repeats):
        for rows in chunks:
            samples, elapsed = timed_samples(module, args.n, rows)
            seconds[rows].append(elapsed)
            whole = samples if rows == 0 else whole
            difference[rows] = max(difference[rows], (samples - whole).abs().max().item())
    print(
        f"{args.experiment}: {args.n} samples, {args.steps} sampler steps, "
        f"median of {args.repeats} alternated repeats, {torch.get_num_threads()} thread(s)"
    )
    print("| sample_chunk | ms per sample | speed-up over the whole batch | largest difference from the whole batch |")
    print("|---|---:|---:|---:|")
    base = statistics.median(seconds[0])
    for rows in chunks:
        median = statistics.median(seconds[rows])
        print(f"| {rows or 'null (whole batch)'} | {1e3 * median / args.n:.2f} | {base / median:.2f} | "
              f"{difference[rows]:.1e} |")


if __name__ == "__main__":
    main()
