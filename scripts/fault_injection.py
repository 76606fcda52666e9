"""Kill `train.py` with SIGKILL at random moments (some while a checkpoint is being written), rerun the same
command in the same output directory, and check that nothing was lost:

    python scripts/fault_injection.py --trials 10 --out /tmp/fault_injection

Each trial trains a small VAE on ring8 (100 steps, a checkpoint event every 5 steps, W&B offline), kills it once,
reruns it to the end and prints one line; then the totals: trials, resumed at the right step (the readable
checkpoint at the latest step at the kill), same W&B id (every offline folder and run.json), history rows lost (a step
1..100 of `train/loss` missing from run.json or from the merged W&B history) and duplicated (a step twice in
run.json, or a W&B row whose value is not the resumed trajectory's); and what the reruns left in `checkpoints/`:
temporary files of killed writes, and epoch checkpoints beyond the one save_top_k=1 keeps.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from divlab.checkpoints import readable_checkpoints  # noqa: E402
from divlab.tracking.wandb_offline import find_offline_runs, merged_history, offline_run_id  # noqa: E402

STEPS = 100
COMMAND = [
    "experiment=vae_ring8",
    "trainer=cpu",
    "logger=wandb",
    "test=false",
    "trainer.max_epochs=5",
    "+trainer.limit_train_batches=20",
    "+trainer.val_check_interval=5",
    "+trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "+trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
    "callbacks.model_checkpoint.monitor=val/loss",
    "callbacks.samples=null",
    "~callbacks.toy_metrics",
    "~callbacks.image_metrics",
    "~callbacks.likelihood",
]


def launch(out: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    log = open(out.parent / f"{out.name}.log", "ab")
    return subprocess.Popen([sys.executable, "train.py", *COMMAND, f"hydra.run.dir={out}"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def kill_at_random(process: subprocess.Popen, out: Path, rng: random.Random, during_write: bool) -> str:
    """SIGKILL once the run's record shows a random step reached: after a further random delay, or as soon as
    a checkpoint's temp file appears (a kill in the middle of a checkpoint write)."""
    target = rng.randint(0, STEPS - 10)
    while process.poll() is None:
        try:
            if json.loads((out / "run.json").read_text()).get("global_step", 0) >= target:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    deadline = time.monotonic() + rng.uniform(0.0, 2.0)
    while time.monotonic() < deadline and process.poll() is None:
        if during_write and list((out / "checkpoints").glob(".*.tmp")):
            break
        time.sleep(0.001 if during_write else 0.02)
    if process.poll() is not None:
        return "finished before the kill"
    process.send_signal(signal.SIGKILL)
    process.wait()
    torn = bool(list((out / "checkpoints").glob(".*.tmp")))
    return "killed during a checkpoint write" if torn else "killed"


def trial(index: int, root: Path, rng: random.Random) -> dict:
    out = root / f"trial{index:02d}"
    shutil.rmtree(out, ignore_errors=True)
    what = kill_at_random(launch(out), out, rng, during_write=index % 2 == 1)
    path, checkpoint, _ = readable_checkpoints(out)
    expected = int(checkpoint["global_step"]) if checkpoint else None
    rerun = launch(out)
    rerun.wait()
    record = json.loads((out / "run.json").read_text())
    attempt = record["attempts"][-1]
    ids = {offline_run_id(folder) for folder in find_offline_runs(out)}
    history = record["history"].get("train/loss", [])
    steps = [step for step, _ in history]
    values = dict(history)
    rows = {row["_step"]: row["train/loss"] for row in merged_history(out) if "train/loss" in row}
    lost = len(set(range(1, STEPS + 1)) - set(steps)) + len(set(range(1, STEPS + 1)) - set(rows))
    duplicated = (len(steps) - len(set(steps))) + sum(
        1 for step, value in rows.items() if step in values and abs(value - values[step]) > 1e-6 * max(1, abs(value)))
    result = {
        "trial": index, "what": what, "exit": rerun.returncode, "status": record["status"],
        "resumed_from_step": attempt.get("resume_step"), "expected_step": expected,
        "right_step": attempt.get("resume_step") == expected, "same_id": ids == {(record["wandb"] or {}).get("id")},
        "lost": lost, "duplicated": duplicated,
        # what the rerun left in checkpoints/: a killed write's temporary file, or more epoch checkpoints than
        # save_top_k=1 keeps (one from the killed attempt's future)
        "temporaries_left": len(list((out / "checkpoints").glob(".*.tmp"))),
        "stale_checkpoints": max(0, len(list((out / "checkpoints").glob("epoch*.ckpt"))) - 1),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("outputs/fault_injection"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng, start = random.Random(args.seed), time.monotonic()
    results = [trial(i, args.out.resolve(), rng) for i in range(args.trials)]
    completed = sum(r["status"] == "completed" and r["exit"] == 0 for r in results)
    print(f"trials: {len(results)}  completed after rerun: {completed}  "
          f"killed during a checkpoint write: {sum(r['what'] == 'killed during a checkpoint write' for r in results)}")
    print(f"resumed at the right step: {sum(r['right_step'] for r in results)}/{len(results)}  "
          f"same W&B id: {sum(r['same_id'] for r in results)}/{len(results)}  "
          f"history rows lost: {sum(r['lost'] for r in results)}  duplicated: {sum(r['duplicated'] for r in results)}  "
          f"wall time: {time.monotonic() - start:.0f} s")
    print(f"temporary files left after the rerun: {sum(r['temporaries_left'] for r in results)}  "
          f"stale epoch checkpoints: {sum(r['stale_checkpoints'] for r in results)}")


if __name__ == "__main__":
    main()
