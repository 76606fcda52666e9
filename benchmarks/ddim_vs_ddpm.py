"""Sampling speed and quality of DDIM at a few step counts against ancestral DDPM with all T steps.

    python -m benchmarks.ddim_vs_ddpm [--checkpoint RUN/checkpoints/last.ckpt] [--n 256] [--steps 10 20 50 100]
                                      [--train trainer.max_epochs=14 ...] [--etas 0 1] [--unclipped] [--skip-ddpm]

One trained Fashion-MNIST DDPM (the checkpoint's weights: the EMA average under the ema callback;
without --checkpoint, the ddpm_fashion_mnist experiment is trained first in a temporary directory, with
the Hydra overrides given to --train), its training steps and last train/val losses printed;
every sampler measured in this one run from the same model, sample count and threads. Quality is the
Fréchet distance (divlab.evaluation.frechet) between n samples and n test images in two fixed feature
spaces: `FD_fmnist`, the 128-d penultimate layer of the shipped Fashion-MNIST classifier
(divlab.evaluation.feature_nets; FID-like, but not Inception), and `FD_pixels`, the images
average-pooled 4×4 to 7×7 and flattened (49-d, nothing learned). The distances between n training
and n test images are printed as the floor set by the sample size.
"""
import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from divlab import load_run, train
from divlab.evaluation.feature_nets import load_feature_net
from divlab.evaluation.frechet import frechet_distance
from divlab.lightning_modules.diffusion import AncestralSampler, DDIMSampler


def pooled_pixels(images: torch.Tensor) -> torch.Tensor:
    """(n, 1, 28, 28) in [−1, 1] → (n, 49): 4×4 average pooling, flattened."""
    return F.avg_pool2d(images.float(), 4).flatten(1)


def feature_maps() -> dict:
    classifier, _ = load_feature_net("fashion_mnist")
    return {"FD_fmnist": lambda x: torch.cat([classifier(b.float()) for b in x.split(500)]), "FD_pixels": pooled_pixels}


def frechet_distances(images: torch.Tensor, real: dict, features: dict) -> dict:
    with torch.no_grad():
        return {name: frechet_distance(f(images.clamp(-1, 1)), real[name]).item() for name, f in features.items()}


def train_default_checkpoint(output_dir: Path, overrides: list[str]) -> Path:
    run = train(["experiment=ddpm_fashion_mnist", "logger=none", "test=false", "callbacks.progress_bar=null",
                 f"hydra.run.dir={output_dir}", *overrides])
    return run.run_dir / "checkpoints" / "last.ckpt"


def describe_training(run_dir: Path) -> str:
    """The model's training length and last losses, from its run.json."""
    record = json.loads((run_dir / "run.json").read_text())
    metrics = record.get("metrics", {})
    losses = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("train/loss", "val/loss") if metrics.get(k) is not None)
    return f"model: {record.get('global_step')} training steps; {losses}"


def timed(sample) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    with torch.no_grad():
        samples = sample()
    return samples, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--etas", type=float, nargs="+", default=[0.0],
                        help="DDIM η values; η = 1 at steps = T is ancestral sampling with σ² = β̃ (a check)")
    parser.add_argument("--train", nargs="*", default=[], metavar="OVERRIDE",
                        help="Hydra overrides for training the model (without --checkpoint)")
    parser.add_argument("--unclipped", action="store_true",
                        help="DDIM also without clamping x̂_0 to [−1, 1] (the DDIM paper's sampler never clips)")
    parser.add_argument(
        "--skip-ddpm",
        action="store_true",
        help="no ancestral baseline: ratios are to the first DDIM row (its seed makes rows reproducible)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    checkpoint = args.checkpoint or train_default_checkpoint(Path(tempfile.mkdtemp(prefix="ddim_vs_ddpm_")), args.train)
    _, data, module = load_run(checkpoint.parent.parent, checkpoint)  # <run>/checkpoints/x.ckpt
    data.setup()
    shape = (args.n, *module.data_shape)
    features = feature_maps()
    test_images = data.real_samples("test", args.n)
    with torch.no_grad():
        real = {name: f(test_images) for name, f in features.items()}
    floor = frechet_distances(data.real_samples("train", args.n), real, features)

    def generator():
        return torch.Generator().manual_seed(args.seed)

    samplers = [] if args.skip_ddpm else [
        ("ddpm", module.schedule.T,
         lambda: AncestralSampler(module.reverse)(module.denoiser, module.schedule, shape, generator=generator()))]
    reverses = [("", module.reverse)]
    if args.unclipped and module.reverse.clip_denoised:
        reverses.append((", x̂_0 unclipped", dataclasses.replace(module.reverse, clip_denoised=False)))
    for suffix, reverse in reverses:
        for eta in args.etas:
            for steps in args.steps:
                samplers.append((f"ddim η = {eta:g}{suffix}", steps, lambda s=steps, e=eta, r=reverse: DDIMSampler(
                    s, e, r)(module.denoiser, module.schedule, shape, generator=generator())))

    print(f"checkpoint {checkpoint}; {args.n} samples; T = {module.schedule.T}; "
          f"torch threads {torch.get_num_threads()}")
    print(describe_training(checkpoint.parent.parent))
    print("train-vs-test floor at this n: " + ", ".join(f"{k} {v:.3f}" for k, v in floor.items()))
    first = samplers[0][0] if args.skip_ddpm else "DDPM"
    print(
        f"| sampler | steps | seconds | speed-up vs {first} | "
        + " | ".join(f"{k} (÷ {first})" for k in features)
        + " |"
    )
    print("|---|---:|---:|---:|" + "---:|" * len(features))
    baseline = None
    for name, steps, sample in samplers:
        samples, seconds = timed(sample)
        fd = frechet_distances(samples, real, features)
        baseline = baseline or (seconds, fd)
        quality = " | ".join(f"{fd[k]:.3f} ({fd[k] / baseline[1][k]:.2f})" for k in features)
        print(f"| {name} | {steps} | {seconds:.1f} | {baseline[0] / seconds:.1f}× | {quality} |", flush=True)


if __name__ == "__main__":
    main()
