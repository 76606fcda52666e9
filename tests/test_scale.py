"""Scale-out on the engines clusters run: SLURM (Hydra's submitit launcher, Lightning's SLURM
environment), torchrun, FSDP's config. The DDP equivalence of each family is in test_ddp_equivalence.py."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, ROOT

# What SLURM sets for task 3 of `sbatch --nodes=2 --ntasks-per-node=2` (the second task on node08).
SLURM_TASK_3_OF_2_NODES_X_2 = {
    "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "1234", "SLURM_NODELIST": "node[07-08]",
}


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=/tmp/unused", "hydra.sweep.dir=/tmp/sweep", *overrides],
                       return_hydra_config=True)


def test_slurm_launcher_takes_nodes_and_tasks_from_the_trainer():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_with_hydra(["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4",
                              "hydra.launcher.partition=gpu"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu" and launcher["max_num_timeout"] > 0


def test_lightning_derives_world_size_and_ranks_from_slurm_variables(monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    # Building the Trainer sets this process's global rank for rank-zero-only code (here 3): restore it after,
    # or every later test's loggers and records act as a non-zero rank.
    monkeypatch.setattr(rank_zero_only, "rank", getattr(rank_zero_only, "rank", 0))
    for name, value in SLURM_TASK_3_OF_2_NODES_X_2.items():
        monkeypatch.setenv(name, value)
    trainer = L.Trainer(accelerator="cpu", strategy="ddp", devices=2, num_nodes=2, logger=False)
    environment = trainer.strategy.cluster_environment
    assert type(environment).__name__ == "SLURMEnvironment"
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)
    assert environment.main_address == "node07"  # the first node of the allocation hosts rank 0


def test_fsdp_config_composes_and_names_its_gpu_requirement_on_cpu():
    cfg = compose_with_hydra(["trainer=fsdp", "experiment=char_gpt"])
    assert cfg.trainer.strategy == "fsdp" and cfg.trainer.accelerator == "gpu"
    with pytest.raises(ValueError, match="requires a GPU accelerator"):  # Lightning's FSDP is CUDA-only
        L.Trainer(accelerator="cpu", strategy=cfg.trainer.strategy, devices=2, logger=False)


def run_command(command: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow  # two training jobs as submitit subprocesses: ~1 min on 2 shared cores
def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    run_command([sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_local", "experiment=gan_ring8",
                 "debug=tiny", "logger=csv", "seed=0,1", f"paths.log_dir={tmp_path}", f"hydra.sweep.dir={sweep}",
                 "hydra.launcher.timeout_min=10"], cwd=tmp_path)
    records = [
        json.loads((sweep / f"{job}_gan_ring8" / "run.json").read_text()) for job in (0, 1)
    ]  # <num>_<experiment>
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert [r["seed"] for r in records] == [0, 1]
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # submitit ran both jobs


def submitit_tasks(folder: Path) -> list[int]:
    """PIDs of the submitit task processes (`python -m submitit.core._submit <folder>/...`) of a sweep."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "submitit.core._submit" in command and str(folder) in command:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow  # a 2,400-step job, pre-empted once and requeued: ~1.5 min on 2 shared cores
def test_a_preempted_submitit_job_is_requeued_and_resumes_its_step_and_wandb_run(tmp_path):
    """What SLURM does at a time-out or pre-emption, through the same launcher: submitit's signal (USR2) makes
    the launcher checkpoint and requeue the job; the requeued job runs in the same output directory and
    resumes from last.ckpt, at the step it had reached, into the same W&B run id."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE

    sweep = tmp_path / "sweep"
    run_dir = sweep / "0_gan_ring8"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_local", "experiment=gan_ring8",
         "debug=tiny", "trainer.max_epochs=400", "logger=wandb", f"paths.log_dir={tmp_path}",
         f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=10"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait until the job is well into training
            record = read_json_or_none(run_dir / "run.json")
            if record and record["global_step"] >= 20 and record["status"] == "running":
                break
            assert job.poll() is None, job.communicate()[0][-3000:]
            time.sleep(0.5)
        tasks = submitit_tasks(sweep)
        assert len(tasks) == 1, tasks
        os.kill(tasks[0], signal.SIGUSR2)  # submitit's pre-emption / time-out signal
        output, _ = job.communicate(timeout=600)
    finally:
        job.kill()
    assert job.returncode == 0, output[-3000:]

    record = json.loads((run_dir / "run.json").read_text())
    first, second = record["attempts"]
    assert first["status"] == "interrupted" and first["reason"] == str(LOCAL_REQUEUE_RETURN_CODE)
    checkpoint_step = second["resume_step"]
    assert second["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt") and checkpoint_step >= 20
    assert second["status"] == "completed" and record["status"] == "completed"
    # 400 epochs × 3 batches × (critic + generator step): nothing redone or lost. (At 40 epochs an idle machine could
    # finish the job between the poll that saw step 20 and the signal, and the job was never pre-empted.)
    assert record["global_step"] == 2400
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and {path.name.rsplit("-", 1)[1] for path in wandb_runs} == {record["wandb"]["id"]}


def read_json_or_none(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.slow  # two processes started by torchrun: ~40 s on 2 shared cores
def test_torchrun_two_processes_train_one_run(tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    run_dir = tmp_path / "run"
    run_command([torchrun, "--nproc_per_node", "2", "--master_port", "29533", str(ROOT / "train.py"), "trainer=ddp",
                 "trainer.accelerator=cpu", "experiment=gan_ring8", "debug=tiny", "logger=csv",
                 f"paths.log_dir={tmp_path}", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["config"]["trainer"]["strategy"] == "ddp" and record["config"]["trainer"]["devices"] == 2
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 6  # 3 batches × (critic + generator step): each rank did the same steps


def torchrun_until_step(tmp_path: Path, step: int, port: str) -> tuple[subprocess.Popen, Path]:
    """A two-rank DDP GAN under torchrun, long enough to be stopped mid-training, once its run.json is past `step`."""
    run_dir = tmp_path / "run"
    command = [shutil.which("torchrun"), "--nproc_per_node", "2", "--master_port", port, str(ROOT / "train.py"),
               "trainer=ddp", "trainer.accelerator=cpu", "experiment=gan_ring8", "debug=tiny", "logger=csv",
               "trainer.max_epochs=300", "callbacks.toy_metrics.every_n_epochs=null", f"paths.log_dir={tmp_path}",
               f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            record = json.loads((run_dir / "run.json").read_text())
            if record["status"] == "running" and record.get("global_step", 0) >= step:
                return job, run_dir
        except (OSError, ValueError, KeyError):
            pass
        assert job.poll() is None, job.communicate()[0][-4000:]
        time.sleep(0.2)
    job.kill()
    raise AssertionError(f"{run_dir} did not reach step {step}: {job.communicate()[0][-4000:]}")


@pytest.mark.parametrize("signalled_rank, port", [(1, "29561"), (0, "29562")])
def test_a_stop_signal_on_one_rank_stops_every_rank_at_the_same_step(tmp_path, signalled_rank, port):
    """SLURM signals a job's ranks one by one (or only some: a failed node, `kill` on one process). The ranks agree
    at each batch boundary, so all stop at the one step: rank 0 records `interrupted` (not gloo's 'Connection closed
    by peer' from a rank left in the all-reduce) and writes last.ckpt at the step it recorded."""
    psutil = pytest.importorskip("psutil")
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    job, run_dir = torchrun_until_step(tmp_path, 20, port)
    workers = [p for p in psutil.Process(job.pid).children(recursive=True)
               if p.environ().get("RANK") == str(signalled_rank)]
    assert len(workers) == 1, workers
    workers[0].send_signal(signal.SIGTERM)
    try:
        output = job.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        job.kill()
        raise AssertionError("a rank hung after another stopped: " + job.communicate()[0][-4000:]) from None
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted", (record["attempts"][-1], output[-3000:])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == record["global_step"] > 20
    assert "Connection closed" not in output
