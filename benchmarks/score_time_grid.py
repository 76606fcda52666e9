"""Score SDE sampling of narrow toy modes: Song et al.'s uniform time grid against the log-SNR grid, by steps.

    python -m benchmarks.score_time_grid --checkpoint RUN/checkpoints/last.ckpt [--grids uniform:500 log_snr:300 ...]
    python -m benchmarks.score_time_grid --checkpoint RUN/checkpoints/last.ckpt --grids log_snr:300 log_snr:100:ddim
    python -m benchmarks.score_time_grid --oracle     # the exact score of N(m, 0.01² I): the sampler alone
    python -m benchmarks.score_time_grid --oracle-ddpm  # the same data through DDPM's samplers (T = 1000)

With a checkpoint of a toy run (e.g. `experiment=score_ring8`): 2,500 samples per grid and step count, drawn as the
toy metrics' test draws them (their seed, the weights the checkpoint holds: EMA where the run kept one) and scored
as it scores them (modes covered, high-quality %, PacGAN's mode reverse KL, the KDE forward/reverse KL and JS),
plus the RMS distance per axis from each sample to its nearest mode, which is the data's σ for a perfect model;
held-out data scored the same way is the first row. A checkpoint of an image run (e.g.
`experiment=score_fashion_mnist`) gets the Fréchet distances of `benchmarks/ddim_vs_ddpm.py` to as many test images
instead (`--n`). With --oracle: the predictor–corrector sampler on the exact
score of N(m, 0.01² I) (the width of a ring mode), printing the samples' standard deviation per axis; with
--oracle-ddpm the same for DDPM's ancestral and DDIM samplers on the exact ε of that data (linear and cosine β,
T = 1000), whose last step also returns a mean at a noise level near the data's width.
A grid GRID:STEPS:ddim samples with deterministic DDIM steps on the SDE's marginals (`model.sampler=ddim`: one
network evaluation a step, no corrector) instead of predictor–corrector; GRID:STEPS:ddim:ETA with DDIM's noise η
(`model.eta`; 1: ancestral steps of the reverse SDE), x̂₀ clipped where the checkpoint's `model.clip_denoised` says so
(`--unclipped`: never).
"""
import argparse
import math
from pathlib import Path

import torch

from benchmarks.ddim_vs_ddpm import describe_training, feature_maps, frechet_distances, timed
from divlab.callbacks.periodic import seeded_samples
from divlab.evaluation.toy import mode_scores, nearest_mode, toy_divergences
from divlab.lightning_modules.diffusion import (
    VPSDE,
    AncestralSampler,
    DDIMSampler,
    MarginalDDIM,
    PredictorCorrector,
    make_schedule,
)
from divlab.saved_runs import load_run

DEFAULT_GRIDS = [
    "uniform:250",
    "uniform:500",
    "uniform:1000",
    "log_snr:100",
    "log_snr:200",
    "log_snr:300",
    "log_snr:500",
]


# (time grid, steps, corrector steps: None for the model's own, or ("ddim", η))
Grid = tuple[str, int, int | tuple[str, float] | None]


def parse_grid(text: str) -> Grid:
    """GRID:STEPS[:CORRECTOR_STEPS|ddim[:ETA]]; without the last, the checkpoint's own corrector steps (the oracle: 1);
    `ddim`: DDIM steps with noise η (default 0) instead of predictor–corrector."""
    grid, steps, *corrector = text.split(":")
    if corrector and corrector[0] == "ddim":
        return grid, int(steps), ("ddim", float(corrector[1]) if len(corrector) > 1 else 0.0)
    return grid, int(steps), int(corrector[0]) if corrector else None


def label(grid: str, steps: int, corrector) -> str:
    if isinstance(corrector, tuple):
        return f"{grid}, {steps} DDIM steps" + ("" if corrector[1] == 0 else f", η = {corrector[1]:g}")
    return f"{grid}, {steps} steps" + ("" if corrector is None else f", {corrector} corrector steps")


def make_sampler(grid: str, steps: int, corrector, snr: float, own_corrector_steps: int, clip_denoised: bool = False):
    if isinstance(corrector, tuple):
        return MarginalDDIM(steps, grid, corrector[1], clip_denoised)
    return PredictorCorrector(steps, snr, own_corrector_steps if corrector is None else corrector, grid)


def toy_row(name: str, samples: torch.Tensor, data, test_points: torch.Tensor, seconds: float | None) -> str:
    distance, _ = nearest_mode(samples, data.centres)
    scores = mode_scores(samples, data.centres, data.sigma)
    divergences = toy_divergences(test_points, samples, data.log_prob)
    return (
        f"| {name} | {'–' if seconds is None else f'{seconds:.1f}'} | {(distance.square().mean() / 2).sqrt():.4f} | "
        f"{scores.modes_covered} | {scores.high_quality_percent:.2f} | {scores.reverse_kl:.4f} | "
        + " | ".join(f"{divergences[k]:.3f}" for k in ("forward_kl", "reverse_kl", "js"))
        + " |"
    )


def set_sampler(module, grid: str, steps: int, corrector, unclipped: bool = False) -> None:
    """DDIM clips x̂₀ as the checkpoint's `clip_denoised` says (runs saved before the option did not), never if
    `unclipped`."""
    clip = module.hparams.get("clip_denoised", False) and not unclipped
    module.sampler = make_sampler(grid, steps, corrector, module.hparams.snr, module.hparams.corrector_steps, clip)


def image_table(checkpoint: Path, module, data, grids: list[Grid], n: int, seed: int, unclipped: bool) -> None:
    features = feature_maps()
    test_images = data.real_samples("test", n)
    with torch.no_grad():
        real = {name: f(test_images) for name, f in features.items()}
    floor = frechet_distances(data.real_samples("train", n), real, features)
    print(f"checkpoint {checkpoint}; {n} samples, seed {seed}; torch threads {torch.get_num_threads()}")
    print(describe_training(checkpoint.parent.parent))
    print("| sampler | seconds | " + " | ".join(features) + " |")
    print("|---|---:|" + "---:|" * len(features))
    print("| training images (the floor at this n) | – | " + " | ".join(f"{floor[k]:.3f}" for k in features) + " |")
    for grid, steps, corrector in grids:
        set_sampler(module, grid, steps, corrector, unclipped)
        samples, seconds = timed(lambda: seeded_samples(module, n, seed))
        distances = frechet_distances(samples, real, features)
        clipped = ", x̂₀ clipped" if getattr(module.sampler, "clip_denoised", False) else ""
        print(f"| {label(grid, steps, corrector)}{clipped} | {seconds:.1f} | "
              + " | ".join(f"{distances[k]:.3f}" for k in features)
              + " |", flush=True)


def checkpoint_table(checkpoint: Path, grids: list[Grid], n: int, seed: int, unclipped: bool = False) -> None:
    _, data, module = load_run(checkpoint.parent.parent, checkpoint)  # <run>/checkpoints/x.ckpt
    data.setup("test")
    if len(module.data_shape) > 1:
        return image_table(checkpoint, module, data, grids, n, seed, unclipped)
    test_points = data.real_samples("test", n).float()
    print(f"checkpoint {checkpoint}; {n} samples, seed {seed}; data σ = {data.sigma}; "
          f"torch threads {torch.get_num_threads()}")
    print("| sampler | seconds | RMS per axis to the nearest mode | modes | HQ % | mode reverse KL | KDE forward KL | "
          "KDE reverse KL | KDE JS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(toy_row("held-out data (validation split)", data.real_samples("val", n).float(), data, test_points, None))
    for grid, steps, corrector in grids:
        set_sampler(module, grid, steps, corrector)
        samples, seconds = timed(lambda: seeded_samples(module, n, seed))
        print(toy_row(label(grid, steps, corrector), samples, data, test_points, seconds), flush=True)


def isotropic_eps_oracle(scales, mean: torch.Tensor, width: float):
    """E[ε | x_t] = σ_t (x_t − a_t m) / (a_t² c² + σ_t²) for data N(m, c² I), with (a_t, σ_t) = scales(t)."""

    def model(x, t):
        a, s = (v.double().view(-1, 1) for v in scales(t))
        return (s * (x.double() - a * mean) / (a**2 * width**2 + s**2)).to(x.dtype)

    return model


def oracle_table(grids: list[Grid], n: int, seed: int, width: float = 0.01) -> None:
    sde = VPSDE()
    eps_oracle = isotropic_eps_oracle(
        lambda t: (sde.mean_coeff(t), sde.std(t)), torch.tensor([1.0, -0.5]).double(), width
    )

    print(f"exact score of N(m, {width}² I), VP SDE; {n} samples, seed {seed}; σ at t = 1e-3: "
          f"{sde.std(torch.tensor(1e-3)).item():.4f}, at 1e-5: {sde.std(torch.tensor(1e-5)).item():.4f}")
    print("| sampler | std per axis | ÷ data's |")
    print("|---|---:|---:|")
    for grid, steps, corrector in grids:
        sampler = make_sampler(grid, steps, corrector, 0.16, 1)
        samples = sampler(eps_oracle, sde, (n, 2), generator=torch.Generator().manual_seed(seed)).double()
        std = samples.std(0).mean().item() if torch.isfinite(samples).all() else math.nan
        print(f"| {label(grid, steps, corrector)} | {std:.4f} | {std / width:.2f} |", flush=True)


def ddpm_oracle_table(n: int, seed: int, width: float = 0.01) -> None:
    mean = torch.tensor([0.3, -0.5], dtype=torch.float64)  # inside [−1, 1], so clipping x̂₀ could not matter
    print(f"exact ε of N(m, {width}² I), DDPM, T = 1000; {n} samples, seed {seed}")
    print("| schedule | sampler | σ at t = 1 | std per axis | ÷ data's |")
    print("|---|---|---:|---:|---:|")
    for kind in ("linear", "cosine"):
        schedule = make_schedule(kind, 1000)
        a_bar = schedule.alphas_cumprod
        eps_oracle = isotropic_eps_oracle(lambda t: (a_bar[t].sqrt(), (1 - a_bar[t]).sqrt()), mean, width)

        samplers = (("ancestral, 1000 steps", AncestralSampler()), ("DDIM η = 0, 50 steps", DDIMSampler(50, 0.0)))
        for name, sampler in samplers:
            samples = sampler(eps_oracle, schedule, (n, 2), generator=torch.Generator().manual_seed(seed)).double()
            std = samples.std(0).mean().item()
            print(f"| {kind} | {name} | {(1 - schedule.alphas_cumprod[0]).sqrt().item():.4f} | {std:.4f} | "
                  f"{std / width:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--oracle", action="store_true")
    parser.add_argument("--oracle-ddpm", action="store_true")
    parser.add_argument(
        "--grids",
        nargs="+",
        default=DEFAULT_GRIDS,
        help="GRID:STEPS[:CORRECTOR_STEPS|ddim[:ETA]], GRID uniform or log_snr",
    )
    parser.add_argument("--n", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0, help="the toy metrics callback's default seed")
    parser.add_argument(
        "--unclipped", action="store_true", help="DDIM never clamps x̂₀ to [−1, 1], whatever the checkpoint says"
    )
    args = parser.parse_args()
    grids = [parse_grid(text) for text in args.grids]
    if args.oracle:
        oracle_table(grids, args.n, args.seed)
    if args.oracle_ddpm:
        ddpm_oracle_table(args.n, args.seed)
    if args.checkpoint:
        checkpoint_table(args.checkpoint, grids, args.n, args.seed, args.unclipped)
    if not (args.oracle or args.oracle_ddpm or args.checkpoint):
        parser.error("give --checkpoint RUN/checkpoints/last.ckpt, --oracle and/or --oracle-ddpm")


if __name__ == "__main__":
    main()
