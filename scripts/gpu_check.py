"""GPU check: every family for a few steps on CUDA with bf16-mixed, torch.compile, fused optimisers
(on by default on CUDA, `divlab.lightning_modules.optim`) and channels_last for image models; DDP on
2 GPUs when there are 2; the mamba-ssm kernels against the pure-torch scan when installed.

    python scripts/gpu_check.py [--steps 30] [--out gpu_check.md] [--only vae ddpm ...]

Prints a table (family, precision, compiled, ms/step, peak memory, pass/fail) and writes it as
Markdown. Each case is a real `train.py` run in a subprocess (so DDP launches as users launch it)
with `StepTimer` measuring; on a machine without CUDA it prints why and exits 0.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGE_MODELS = {"vae", "gan_dcgan", "ddpm", "score"}
# name → (train.py overrides, whether the family has its own compile flag)
CASES = {
    "vae": (["experiment=vae_fashion_mnist"], False),
    "gan_dcgan": (["experiment=gan_fashion_mnist"], False),
    "gan_wgan_gp": (["experiment=gan_ring8", "divergence=wasserstein", "data.batch_size=512"], False),
    "gan_mmd": (["experiment=gan_ring8", "divergence=mmd", "data.batch_size=512"], False),
    "ddpm": (["experiment=ddpm_fashion_mnist"], False),
    "score": (["experiment=score_fashion_mnist"], False),
    "ar_gpt": (["experiment=char_gpt"], True),
    "ar_s4d": (["experiment=char_s4d"], True),
    "ar_mamba": (["experiment=char_mamba"], True),
    "pixel_ar": (["experiment=pixel_ar_fashion_mnist"], True),
    "reward_model": (["experiment=align_reward_model"], False),
    "dpo": (["experiment=align_dpo"], False),
    "ppo": (["experiment=align_ppo"], False),
}
MEASURE = ["+callbacks.step_timer._target_=divlab.callbacks.step_timer.StepTimer", "+callbacks.step_timer.warmup=5"]


def case_overrides(name: str, compiled: bool, devices: int, steps: int, out: Path,
                   accelerator: str = "gpu") -> list[str]:
    overrides, own_flag = CASES[name]
    run = [*overrides, "callbacks=none", *MEASURE, "logger=csv", "test=false", f"++trainer.max_steps={steps}",
           "++trainer.limit_val_batches=0", "++trainer.num_sanity_val_steps=0", "trainer.precision=bf16-mixed",
           f"trainer.accelerator={accelerator}", f"trainer.devices={devices}", f"hydra.run.dir={out}"]
    if devices > 1:
        run.append("trainer.strategy=ddp")
    if compiled:
        run.append("model.compile=true" if own_flag else
                   "+callbacks.compile._target_=divlab.callbacks.compile_networks.CompileNetworks")
    if name in IMAGE_MODELS:
        run.append("+callbacks.channels_last._target_=divlab.callbacks.compile_networks.ChannelsLast")
    return run


def run_case(name: str, compiled: bool, devices: int, steps: int, workdir: Path, accelerator: str = "gpu") -> dict:
    """One `train.py` run of case `name` → a table row (`accelerator="cpu"` for a smoke test of the script)."""
    out = workdir / f"{name}-{'compiled' if compiled else 'eager'}-{devices}gpu"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *case_overrides(name, compiled, devices, steps, out, accelerator),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"})
    row = {"family": name, "devices": devices, "precision": "bf16-mixed", "compiled": compiled,
           "seconds": round(time.perf_counter() - start, 1)}
    record = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    metrics = record.get("metrics", {})
    row.update(ms_per_step=metrics.get("time/train/ms_per_step"), peak_gib=metrics.get("memory/peak_gib"),
               status="pass" if result.returncode == 0 and record.get("status") == "completed" else "FAIL")
    if row["status"] == "FAIL":
        row["error"] = (result.stderr or result.stdout)[-600:].replace("\n", " | ")
    return row


def mamba_kernel_check() -> dict:
    """The mamba-ssm CUDA kernel against divlab's pure-torch chunked scan on one random input."""
    from divlab.lightning_modules.networks import mamba

    row = {"family": "mamba_kernel_vs_torch", "devices": 1, "precision": "fp32", "compiled": False}
    if mamba.selective_scan_fn is None:
        return {**row, "status": "skipped (mamba-ssm not installed)"}
    g = torch.Generator(device="cuda").manual_seed(0)
    shape = (2, 256, 64)
    u, delta = torch.randn(*shape, device="cuda", generator=g), torch.rand(*shape, device="cuda", generator=g) * 0.1
    A = -torch.rand(64, 16, device="cuda", generator=g) - 0.5
    B, C = (torch.randn(2, 256, 16, device="cuda", generator=g) for _ in range(2))
    D = torch.randn(64, device="cuda", generator=g)
    kernel, _ = mamba.selective_scan(u, delta, A, B, C, D)
    saved, mamba.selective_scan_fn = mamba.selective_scan_fn, None
    try:
        reference, _ = mamba.selective_scan(u, delta, A, B, C, D)
    finally:
        mamba.selective_scan_fn = saved
    error = (kernel - reference).abs().max().item()
    return {**row, "max_abs_error": error, "status": "pass" if error < 1e-3 else "FAIL"}


def markdown(rows: list[dict], device_name: str) -> str:
    lines = [f"GPU: {device_name}, torch {torch.__version__}", "",
             "| family | GPUs | precision | compiled | ms/step | peak GiB | status |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = f"{r['ms_per_step']:.1f}" if r.get("ms_per_step") is not None else "–"
        gib = f"{r['peak_gib']:.2f}" if r.get("peak_gib") is not None else "–"
        status = r["status"] + (f" (max abs error {r['max_abs_error']:.1e})" if "max_abs_error" in r else "")
        lines.append(
            f"| {r['family']} | {r['devices']} | {r['precision']} | {r['compiled']} | {ms} | {gib} | {status} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"))
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), default=sorted(CASES))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; skipped. Run it on a GPU machine: bash scripts/gpu_check.sh")
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.only:
            for compiled in (False, True):
                rows.append(run_case(name, compiled, 1, args.steps, Path(workdir)))
                print(rows[-1], flush=True)
            if torch.cuda.device_count() >= 2:
                rows.append(run_case(name, False, 2, args.steps, Path(workdir)))
                print(rows[-1], flush=True)
    rows.append(mamba_kernel_check())
    table = markdown(rows, torch.cuda.get_device_name(0))
    print(table)
    args.out.write_text(table)
    return 0 if all(r["status"] != "FAIL" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
