"""A study run in pieces: a failed job does not stop the others, `compare` says what a sweep folder lacks, and a rerun
of the same command completes only that (the image study's folders are named by their overrides)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from divlab.cli.compare import main as compare_main
from divlab.tracking.sweep_progress import asked_jobs, sweep_jobs

ROOT = Path(__file__).resolve().parents[1]
GOOD = "{model:vae},{model:gan,divergence:js}"
BAD = "{model:gan,divergence:kl,model.critic_optimizer.lr:1e38}"  # its losses stop being finite at once


def sweep(tmp_path: Path, members: str, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "experiment=study_fashion_mnist", "debug=fdr",
                           "trainer=cpu", "logger=csv", "extras.print_config=false",
                           f"hydra.sweeper.members=[{members}]",
                           "hydra.sweeper.params.seed='0,1'", f"paths.log_dir={tmp_path}", *overrides],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "disabled"})


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def job(jobs, *overrides: str):
    """The one job whose overrides include all of these."""
    (found,) = [j for j in jobs if set(overrides) <= set(j.overrides)]
    return found


def test_a_study_stopped_part_way_is_completed_by_rerunning_its_command(tmp_path, capsys):
    folder = tmp_path / "multiruns" / "study_fashion_mnist"
    first = sweep(tmp_path, f"{GOOD},{BAD}", "seed=0")  # one seed of two: a study run in pieces
    assert first.returncode != 0
    assert "1 of 3 study jobs failed" in first.stderr and "model.critic_optimizer.lr=1e+38" in first.stderr
    jobs = sweep_jobs(folder)
    assert len(jobs) == len(asked_jobs(folder)) == 6  # 3 members × the study's seeds 0 and 1, though this ran seed 0
    vae, js = job(jobs, "model=vae", "seed=0"), job(jobs, "divergence=js", "seed=0")
    assert vae.status == js.status == "completed"
    assert {"model=vae", "seed=0"} <= set(vae.run_dir.name.split(","))  # named by its overrides
    failed = job(jobs, "model.critic_optimizer.lr=1e+38", "seed=0")
    assert failed.status == "failed" and "non-finite" in record(failed.run_dir)["attempts"][-1]["reason"]
    assert {j.status for j in jobs if "seed=1" in j.overrides} == {"not started"}

    # a job stopped part-way (as a stop would leave it), then compare on the partial folder
    (js.run_dir / "run.json").write_text(json.dumps(record(js.run_dir) | {"status": "interrupted"}))
    assert compare_main([str(folder), "--out", str(tmp_path / "report")]) == 0
    progress = (tmp_path / "report" / "progress.md").read_text()
    assert "1 of 6 jobs completed; 5 missing" in progress
    assert "- interrupted: model=gan divergence=js seed=0" in progress
    assert "- not started: model=vae seed=1" in progress
    assert "- failed: model=gan divergence=kl model.critic_optimizer.lr=1e+38" in progress
    assert progress.splitlines()[0] in capsys.readouterr().out

    vae_attempts = len(record(vae.run_dir)["attempts"])
    second = sweep(tmp_path, GOOD)  # the whole study (both seeds) of its two good members
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"{vae.run_dir} holds this job's completed run: skipped" in second.stdout + second.stderr
    assert len(record(vae.run_dir)["attempts"]) == vae_attempts  # not run again
    assert record(js.run_dir)["status"] == "completed" and len(record(js.run_dir)["attempts"]) == 2  # resumed
    assert [j.status for j in sweep_jobs(folder)] == ["completed"] * 4
