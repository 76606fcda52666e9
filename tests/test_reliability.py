"""Issue 16: nothing lost, nothing run that shouldn't be. Each test reproduces a failure of the old code.

Safe loading (a payload checkpoint never runs), resume that appends to the record, last.ckpt at the latest
state, a NaN guard, honest exit codes, and every bad input named before anything saved is touched.
"""
import io
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException

from conftest import compose_config

# A tiny VAE run without the costly sampling callbacks (val/loss, the monitored metric, and val/nll stay).
TINY = ("experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=csv", "~callbacks.toy_metrics",
        "~callbacks.samples", "~callbacks.progress_bar")


class _Payload:
    """Unpickling this calls open(path, "w"): the file exists afterwards iff the checkpoint's code ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def write_payload(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "optimizer_states": [], "loops": {}, "global_step": 0, "x": _Payload(marker)},
               buffer)
    path.write_bytes(buffer.getvalue())
    return path


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def record_of(directory: Path) -> dict:
    return json.loads((directory / "run.json").read_text())


# 1. A checkpoint can execute arbitrary code ---------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["last", "explicit"])
def test_payload_checkpoint_is_refused_and_its_code_never_runs(train_with, tmp_path, where):
    marker = tmp_path.parent / f"pwned-{where}"
    ckpt = write_payload(tmp_path / "checkpoints" / "last.ckpt", marker)
    overrides = [*TINY] + ([f"ckpt_path={ckpt}"] if where == "explicit" else [])
    with pytest.raises(ValueError, match="refused, not loaded: it asks to run io.open"):
        train_with(*overrides)
    assert not marker.exists()
    assert not (tmp_path / "run.json").exists()


def test_eval_refuses_a_payload_checkpoint(tmp_path):
    import eval as evaluation

    marker = tmp_path / "pwned"
    ckpt = write_payload(tmp_path / "run" / "checkpoints" / "x.ckpt", marker)
    cfg = _eval_config(tmp_path, ckpt)
    with pytest.raises(ValueError, match="refused"):
        evaluation.evaluate(cfg)
    assert not marker.exists()


def test_reward_model_and_reference_policy_load_weights_only(tmp_path):
    from divlab.lightning_modules.reward_model import load_reward_model

    marker = tmp_path / "pwned"
    ckpt = write_payload(tmp_path / "run" / "checkpoints" / "x.ckpt", marker)
    with pytest.raises(Exception, match="Weights only load failed"):
        load_reward_model(str(ckpt))
    assert not marker.exists()


def _eval_config(tmp_path: Path, ckpt: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    from conftest import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("eval", overrides=[f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path / 'eval'}",
                                          "logger=csv", *overrides])


# 2. `_target_`s read back from a run's saved config -------------------------------------------------------------------

def test_eval_instantiates_nothing_but_divlab_torch_lightning_from_a_saved_config(train_with, tmp_path):
    run_dir = tmp_path / "run"
    train_with(*TINY, "test=false", out=run_dir)
    marker = tmp_path / "pwned"
    record = record_of(run_dir)
    record["config"]["data"] = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    (run_dir / "run.json").write_text(json.dumps(record))
    import eval as evaluation

    with pytest.raises(ValueError, match=r"data._target_='builtins.open' is not a divlab, torch or Lightning"):
        evaluation.evaluate(_eval_config(tmp_path, run_dir / "checkpoints" / "last.ckpt"))
    record["config"]["data"] = {"_target_": "torch.load", "f": "x"}  # torch, but a function, not a class
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="torch.load"):
        evaluation.evaluate(_eval_config(tmp_path, run_dir / "checkpoints" / "last.ckpt"))
    assert not marker.exists()


# 3, 7, 15.2. A rerun appends to the record, history by step; a rerun that fails before training damages nothing -------

def test_rerun_appends_history_and_a_failing_rerun_leaves_everything_as_it_was(train_with, tmp_path):
    train_with(*TINY, "test=false")
    first = record_of(tmp_path)
    _, _ = train_with(*TINY, "trainer.max_epochs=2")
    second = record_of(tmp_path)
    assert second["started_at"] == first["started_at"] and len(second["attempts"]) == 2
    assert second["attempts"][1]["resumed_from"].endswith("last.ckpt")
    steps = [step for step, _ in second["history"]["train/loss"]]
    assert steps == sorted(set(steps)) and steps[: len(first["history"]["train/loss"])] == \
        [step for step, _ in first["history"]["train/loss"]]
    assert second["status"] == "completed" and "test/nll" in second["metrics"]
    # 7 and 15.2: each metric's history holds the steps it was logged at, once, the final validation included
    history = second["history"]
    assert [step for step, _ in history["val/nll"]] == [3, 6]
    assert [step for step, _ in history["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in history["test/nll"]] == [6]

    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="holds a run of model divlab.lightning_modules.vae.VAE, not .*GAN"):
        train_with("experiment=gan_ring8", "debug=tiny", "trainer=cpu", "logger=csv")
    with pytest.raises(ValueError, match="written by a different model"):  # same family, other network shapes
        train_with(*TINY, "model.latent_dim=7", "resume.allow_config_change=[model.latent_dim]")
    assert snapshot(tmp_path) == before

    train_with(*TINY, "trainer.max_epochs=2")  # the finished command again: appends, keeps the history
    third = record_of(tmp_path)
    assert len(third["attempts"]) == 3 and third["history"]["train/loss"] == second["history"]["train/loss"]


def test_a_rerun_failing_before_training_keeps_the_saved_hydra_config(tmp_path):
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from divlab.tracking.run_record import KeepSavedConfig

    (tmp_path / ".hydra").mkdir()
    (tmp_path / "run.json").write_text('{"status": "completed"}')
    (tmp_path / ".hydra" / "config.yaml").write_text("model: vae\n")
    config = OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path)}, "output_subdir": ".hydra",
                                         "runtime": {"output_dir": str(tmp_path)}}})
    callback = KeepSavedConfig()
    callback.on_run_start(config=config)
    (tmp_path / ".hydra" / "config.yaml").write_text("model: gan\n")  # what Hydra saves for the rerun
    callback.on_job_end(config=config, job_return=JobReturn(status=JobStatus.FAILED))
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "model: vae\n"

    callback.on_run_start(config=config)
    (tmp_path / ".hydra" / "config.yaml").write_text("model: vae\nseed: 1\n")
    (tmp_path / "run.json").write_text('{"status": "failed"}')  # this rerun trained, then failed: its config stays
    callback.on_job_end(config=config, job_return=JobReturn(status=JobStatus.FAILED))
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "model: vae\nseed: 1\n"


# 4. Resume falls back to the newest readable checkpoint ---------------------------------------------------------------

def test_torn_last_checkpoint_falls_back_to_the_newest_readable_one(train_with, tmp_path, caplog):
    train_with(*TINY, "test=false", "logger=wandb")
    first = record_of(tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # killed while last.ckpt was being written
    with caplog.at_level("WARNING"):
        train_with(*TINY, "test=false", "logger=wandb", "trainer.max_epochs=2")
    second = record_of(tmp_path)
    assert "epoch000" in second["attempts"][1]["resumed_from"]
    assert "resuming from" in caplog.text and "epoch000" in caplog.text
    assert second["wandb"]["id"] == first["wandb"]["id"]
    assert torch.load(last, weights_only=True)["global_step"] == 6


# 5. last.ckpt is the latest state, also when a metric is monitored and on SIGTERM -------------------------------------

def test_last_checkpoint_is_the_final_step_when_a_metric_is_monitored(train_with, tmp_path):
    train_with(*TINY, "test=false", "trainer.max_epochs=3", "+trainer.max_steps=5")
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5


def _stop_at(monkeypatch, step: int, action):
    from divlab.lightning_modules.vae import VAE

    original = VAE.training_step

    def step_then_act(self, x, batch_idx):
        out = original(self, x, batch_idx)
        if self.trainer.global_step == step:
            out = action(out)
        return out

    monkeypatch.setattr(VAE, "training_step", step_then_act)


# 8/9. Non-finite losses fail the run; SIGTERM saves, records `interrupted`, exits non-zero ----------------------------

def test_sigterm_saves_last_records_interrupted_and_exits_143(train_with, tmp_path, monkeypatch):
    def sigterm(out):
        os.kill(os.getpid(), signal.SIGTERM)
        return out

    _stop_at(monkeypatch, 4, sigterm)
    with pytest.raises(SystemExit) as stop:
        train_with(*TINY, "trainer.max_epochs=3")
    assert stop.value.code == 128 + signal.SIGTERM
    record = record_of(tmp_path)
    assert record["status"] == "interrupted"
    # The signal came inside step 5, before its update; the batch it came in completes, and the run stops before the
    # next one takes a step (SignalsBetweenTrainingBatches): last.ckpt holds step 5.
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5


def test_a_preemption_between_a_gans_critic_and_generator_steps_resumes_without_redoing_a_step(
        train_with, tmp_path, monkeypatch):
    # submitit's requeue raises SystemExit from its signal handler; arriving between the two optimiser steps of one
    # GAN batch, it used to leave last.ckpt at an odd step, and the resumed run redid that batch's critic step.
    from divlab.lightning_modules.gan import GAN

    original = GAN.descend

    def descend_then_preempt(self, optimizer, loss):
        original(self, optimizer, loss)
        if self.trainer.global_step == 5:  # the critic step of the third batch is done, its generator step is not
            os.kill(os.getpid(), signal.SIGUSR2)

    def requeue(signum, frame):
        raise SystemExit(3)

    gan = ("experiment=gan_ring8", "debug=tiny", "trainer=cpu", "logger=csv", "~callbacks.toy_metrics")
    monkeypatch.setattr(GAN, "descend", descend_then_preempt)
    previous = signal.signal(signal.SIGUSR2, requeue)
    try:
        with pytest.raises(SystemExit) as stop:
            train_with(*gan, "trainer.max_epochs=3")
    finally:
        signal.signal(signal.SIGUSR2, previous)
    monkeypatch.undo()
    assert stop.value.code == 3
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6  # a whole batch
    train_with(*gan, "trainer.max_epochs=3", "ckpt_path=last")
    assert record_of(tmp_path)["global_step"] == 18  # 3 epochs × 3 batches × (critic + generator): none redone


class SlowEvaluation:
    """A callback whose validation takes 60 s, during which a scheduler sends SIGTERM."""

    def __init__(self):
        import lightning as L

        class Slow(L.Callback):
            def on_validation_end(self, trainer, pl_module):
                if not trainer.sanity_checking:
                    os.kill(os.getpid(), signal.SIGTERM)
                    import time

                    time.sleep(60)

        self.callback = Slow()


def test_sigterm_during_a_long_evaluation_stops_the_run_at_once(train_with, tmp_path, monkeypatch):
    import time

    import hydra

    slow = SlowEvaluation().callback
    real_instantiate = hydra.utils.instantiate
    monkeypatch.setattr(hydra.utils, "instantiate",
                        lambda cfg, *a, **k: slow if getattr(cfg, "get", lambda _: None)("_target_") == "slow"
                        else real_instantiate(cfg, *a, **k))
    start = time.perf_counter()
    with pytest.raises(SystemExit) as stop:
        train_with(*TINY, "+callbacks.slow._target_=slow")
    assert time.perf_counter() - start < 45  # not the 60 s the evaluation would take (Lightning waited for it)
    assert stop.value.code == 128 + signal.SIGTERM
    assert record_of(tmp_path)["status"] == "interrupted"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_ctrl_c_saves_last_records_interrupted_and_exits_130(train_with, tmp_path, monkeypatch):
    def ctrl_c(out):
        raise KeyboardInterrupt

    _stop_at(monkeypatch, 4, ctrl_c)
    with pytest.raises(SystemExit) as stop:
        train_with(*TINY, "trainer.max_epochs=3")
    assert stop.value.code == 128 + signal.SIGINT
    assert record_of(tmp_path)["status"] == "interrupted"
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_a_gan_at_a_huge_learning_rate_fails_instead_of_completing_on_nan(train_with, tmp_path):
    from divlab.callbacks.nan_guard import NonFiniteError

    # The first non-finite training scalar is named: the generator's loss, or its push per sample (an inf gradient).
    with pytest.raises(NonFiniteError, match=r"train/(generator_loss|sample_grad_norm) = (nan|inf)"):
        train_with("experiment=gan_ring8", "debug=tiny", "logger=csv", "model.generator_optimizer.lr=1e4",
                   "model.critic_optimizer.lr=1e4")
    record = record_of(tmp_path)
    assert record["status"] == "failed" and "non-finite" in record["reason"]


def test_non_finite_loss_fails_the_run_and_keeps_the_last_finite_checkpoint(train_with, tmp_path, monkeypatch):
    from divlab.callbacks.nan_guard import NonFiniteError

    _stop_at(monkeypatch, 4, lambda loss: loss * float("nan"))
    with pytest.raises(NonFiniteError, match="non-finite values at global step"):
        train_with(*TINY, "trainer.max_epochs=3")
    record = record_of(tmp_path)
    assert record["status"] == "failed" and "non-finite" in record["reason"]
    for ckpt in (tmp_path / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True)
        assert state["global_step"] == 3
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    json.loads((tmp_path / "run.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in run.json"))


def test_nan_weights_are_caught_before_they_are_checkpointed(train_with, tmp_path, monkeypatch):
    from divlab.callbacks.nan_guard import NonFiniteError

    def poison(loss):
        with torch.no_grad():
            next(iter(torch.nn.Module.parameters(_current["model"]))).fill_(float("inf"))
        return loss

    from divlab.lightning_modules.vae import VAE

    original = VAE.training_step
    _current = {}

    def step(self, x, batch_idx):
        _current["model"] = self
        out = original(self, x, batch_idx)
        return poison(out) if self.trainer.global_step == 2 else out

    monkeypatch.setattr(VAE, "training_step", step)
    with pytest.raises(NonFiniteError, match="weight"):
        train_with(*TINY, "trainer.max_epochs=2")
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))


# 6. W&B history across resumes: rows keyed by global step; a killed attempt's rows past its checkpoint dropped --------

def test_resumed_wandb_history_is_complete_and_unique(train_with, tmp_path, monkeypatch):
    from divlab.tracking.wandb_offline import find_offline_runs, merged_history, offline_run_id

    wandb = (*TINY, "logger=wandb", "test=false")
    train_with(*wandb)  # attempt 1: steps 1-3, last.ckpt at 3

    def crash(out):
        raise RuntimeError("killed")

    _stop_at(monkeypatch, 5, crash)  # attempt 2 logs steps 4-5 past the checkpoint, then dies
    with pytest.raises(RuntimeError, match="killed"):
        train_with(*wandb, "trainer.max_epochs=2")
    monkeypatch.undo()
    train_with(*wandb, "trainer.max_epochs=2")  # attempt 3 resumes from step 3
    record = record_of(tmp_path)
    folders = find_offline_runs(tmp_path)
    assert len(folders) == 3 and {offline_run_id(f) for f in folders} == {record["wandb"]["id"]}
    rows = [row for row in merged_history(tmp_path) if "train/loss" in row]
    assert [row["_step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row["train/loss"] for row in rows] == pytest.approx([v for _, v in record["history"]["train/loss"]])


@pytest.mark.slow
def test_ddp_spawn_records_test_metrics_at_the_final_step(train_with, tmp_path):
    train_with(*TINY, "trainer=ddp_spawn", "trainer.devices=2")
    record = record_of(tmp_path)
    assert record["status"] == "completed" and record["global_step"] == 3
    assert [step for step, _ in record["history"]["test/nll"]] == [3]
    assert [step for step, _ in record["history"]["val/nll"]] == [3]
    assert [step for step, _ in record["history"]["train/loss"]] == [1, 2, 3]


# 10. Every bad input named, early, losing nothing ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "override, message",
    [
        ("model.beta=nan", "model.beta must be a finite number, got nan"),
        ("model.optimizer.lr=inf", "model.optimizer.lr must be a finite number, got inf"),
        ("model.beta=abc", "model.beta must be a number, got 'abc'"),
        ("seed=abc", "seed must be a whole number, got 'abc'"),
        ("trainer.max_epochs=0", "trainer.max_epochs must be >= 1, got 0"),
        ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps must be >= 1, got 0"),
    ],
)
def test_bad_values_are_named_before_anything_is_written(train_with, tmp_path, override, message):
    with pytest.raises((ValueError, InstantiationException), match=message):
        train_with(*TINY, override)
    assert not (tmp_path / "run.json").exists() and not (tmp_path / "checkpoints").exists()


def test_each_gan_optimiser_is_named(train_with, tmp_path):
    with pytest.raises(ValueError, match="model.critic_optimizer.lr must be > 0, got -1"):
        train_with("experiment=gan_ring8", "debug=tiny", "model.critic_optimizer.lr=-1")


def test_a_directory_as_ckpt_path_is_named_as_one(train_with, tmp_path):
    with pytest.raises(FileNotFoundError, match="is a directory; pass a .ckpt file inside it"):
        train_with(*TINY, f"ckpt_path={tmp_path.parent}")


@pytest.mark.parametrize("content, message", [
    ({"model.weight": torch.zeros(2)}, "has no state_dict: not a Lightning checkpoint"),
    ({"state_dict": {"w": torch.zeros(2)}}, "lacks optimizer_states, loops, global_step"),
])
def test_checkpoints_lightning_cannot_restore_are_refused_early(train_with, tmp_path, content, message):
    ckpt = tmp_path.parent / "plain.ckpt"
    torch.save(content, ckpt)
    with pytest.raises(ValueError, match=message):
        train_with(*TINY, f"ckpt_path={ckpt}")
    assert not (tmp_path / "run.json").exists()


def test_a_corrupt_run_json_elsewhere_is_skipped_with_its_name(train_with, tmp_path, caplog):
    from divlab.tracking.runs import load_runs

    good, bad = tmp_path / "a", tmp_path / "b"
    train_with(*TINY, "test=false", "run.group=g", out=good)
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        runs = load_runs([tmp_path])
    assert [run["run_dir"] for run in runs] == [str(good)] and str(bad / "run.json") in caplog.text
    train_with(*TINY, "test=false", "run.group=g", "ckpt_path=last", "trainer.max_epochs=2", out=tmp_path / "c")
    assert "a/checkpoints/last.ckpt" in record_of(tmp_path / "c")["attempts"][0]["resumed_from"]


# 11. Run directories are unique ---------------------------------------------------------------------------------------

def test_run_directories_of_launches_in_the_same_second_differ(tmp_path):
    from hydra import compose, initialize_config_dir

    from conftest import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        dirs = {compose("train", return_hydra_config=True).hydra.run.dir for _ in range(3)}
    assert len(dirs) == 3


# 12. run.json mode; checkpoint temps beside their target --------------------------------------------------------------

def test_run_json_is_readable_by_others_and_strict_json(tmp_path):
    import math

    from divlab.run_files import read_run_record, write_json_atomic

    write_json_atomic(tmp_path / "run.json", {"metrics": {"a": float("inf"), "b": float("nan"), "c": 1.0}})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o666 & ~umask
    text = (tmp_path / "run.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c))["metrics"] == {"a": "Infinity", "b": "NaN",
                                                                                    "c": 1.0}
    metrics = read_run_record(tmp_path)["metrics"]
    assert metrics["a"] == math.inf and math.isnan(metrics["b"]) and metrics["c"] == 1.0


def test_a_kill_during_a_checkpoint_write_leaves_the_old_file_and_no_temp_elsewhere(tmp_path, monkeypatch):
    import tempfile

    from divlab.checkpoints import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, target)
    system_temps = set(Path(tempfile.gettempdir()).iterdir())

    def killed(obj, file):
        file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert set(Path(tempfile.gettempdir()).iterdir()) <= system_temps
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_preemption_signal_during_a_checkpoint_write_exits_after_the_checkpoint_is_whole(tmp_path, monkeypatch):
    # submitit's requeue handler raises SystemExit; landing inside torch.save's writes it once turned a requeue
    # into RuntimeError('unexpected pos ...'). Here the signal arrives halfway through the write.
    import os
    import signal

    from divlab.checkpoints import AtomicCheckpointIO

    def requeue(signum, frame):
        raise SystemExit(3)

    real_save = torch.save

    def save_interrupted_halfway(obj, file):
        file.write(b"")  # the write has begun
        os.kill(os.getpid(), signal.SIGUSR2)  # delivered to this (main) thread before kill returns
        real_save(obj, file)

    previous = signal.signal(signal.SIGUSR2, requeue)
    try:
        monkeypatch.setattr(torch, "save", save_interrupted_halfway)
        with pytest.raises(SystemExit) as exit_info:
            AtomicCheckpointIO().save_checkpoint({"step": 7}, tmp_path / "last.ckpt")
    finally:
        signal.signal(signal.SIGUSR2, previous)
    monkeypatch.undo()
    assert exit_info.value.code == 3
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"step": 7}
    assert signal.getsignal(signal.SIGUSR2) is previous


def test_deferred_signals_keep_their_order_and_default_actions(monkeypatch):
    import os
    import signal

    from divlab.deferred_signals import signals_deferred

    seen, raised = [], []
    previous = {number: signal.signal(number, lambda n, frame: seen.append(n))
                for number in (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGUSR2)
            os.kill(os.getpid(), signal.SIGUSR1)
            assert seen == []  # nothing runs inside the block
        assert seen == [signal.SIGUSR2, signal.SIGUSR1]
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # default action: raised again after the block
        monkeypatch.setattr(signal, "raise_signal", raised.append)
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGUSR1)
        assert raised == [signal.SIGUSR1] and signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# 21.1. ckpt_path=last never resumes a different model; groups describe what runs --------------------------------------

def test_ckpt_path_last_never_resumes_another_models_checkpoint(train_with, tmp_path):
    train_with(*TINY, "test=false", "run.group=shared", out=tmp_path / "vae")
    with pytest.raises(FileNotFoundError, match="with this model and data"):
        train_with("experiment=gan_ring8", "debug=tiny", "logger=csv", "run.group=shared", "ckpt_path=last",
                   out=tmp_path / "gan")


def test_group_is_the_preset_only_while_the_run_is_the_preset(tmp_path):
    from types import SimpleNamespace

    from train import describe_run

    model = SimpleNamespace(hparams={"family": "ar", "divergence": "kl"})
    data = SimpleNamespace(name="text")
    cfg = compose_config(tmp_path, [])
    describe_run(cfg, data, model, ["data=text", "data.path=my.txt", "model=ar"])
    assert cfg.run.group == "ar-kl-text"
    cfg = compose_config(tmp_path, [])
    describe_run(cfg, data, model, ["trainer.max_epochs=2"])
    assert cfg.run.group == "vae_fashion_mnist"


# 21.11. WANDB_MODE=dryrun is offline, as W&B treats it ----------------------------------------------------------------

def test_wandb_dryrun_means_offline(monkeypatch):
    from divlab.tracking.wandb_logger import resolve_mode

    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode(None) == "offline"


def test_the_record_times_evaluation_and_not_training(tmp_path):
    """`evaluation_seconds` spans the validation loop (its batches and the callbacks' epoch-end work) and the
    test loop, not training: sleeps of known length in each place, bounds that a misplaced clock would cross."""
    import time

    import lightning as L

    from divlab.tracking.run_record import RunRecord

    class Sleepy(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            time.sleep(0.5)  # training: 3 × 0.5 s, not evaluation
            return (self.w - 1).pow(2).sum()

        def validation_step(self, batch, batch_idx):
            time.sleep(0.3)  # 2 batches × 0.3 s

        def test_step(self, batch, batch_idx):
            time.sleep(0.2)  # 1 batch × 0.2 s

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class EpochEndEvaluation(L.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            time.sleep(0.4)  # an evaluation callback's work

    loader = torch.utils.data.DataLoader(torch.zeros(3, 1), batch_size=1)
    record = RunRecord(str(tmp_path), config={})
    trainer = L.Trainer(max_epochs=1, limit_val_batches=2, limit_test_batches=1, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[EpochEndEvaluation(), record])
    model = Sleepy()
    trainer.fit(model, loader, loader)
    trainer.test(model, loader)
    record.finish("completed")
    seconds = json.loads((tmp_path / "run.json").read_text())["attempts"][-1]["evaluation_seconds"]
    assert 0.6 + 0.4 + 0.2 <= seconds < 1.2 + 0.5  # counting one training step would pass 1.7


# 48. No silent resume onto other settings; refusals that read as refusals; the last unclear bad inputs ----------------

def test_config_changes_name_what_is_learned_from_and_leave_budget_paths_and_loggers_out():
    from divlab.resume_config import check_resume_config, config_changes

    saved = {"seed": 0, "data": {"n_train": 2000, "data_dir": "/a", "num_workers": 0, "batch_size": 64},
             "model": {"beta": 1.0, "optimizer": {"lr": 1e-3, "betas": [0.9, 0.99]}, "sample_chunk": None},
             "trainer": {"max_epochs": 10}, "logger": {"csv": {}}, "paths": {"output_dir": "/x"}, "ckpt_path": None}
    now = {"seed": 1, "data": {"n_train": 50000, "data_dir": "/b", "num_workers": 4, "batch_size": 64},
           "model": {"beta": 1.0, "optimizer": {"lr": 1e-3, "betas": (0.9, 0.999)}, "sample_chunk": 256, "new": 1},
           "trainer": {"max_epochs": 20, "max_steps": 5}, "logger": {"wandb": {}}, "paths": {"output_dir": "/y"},
           "ckpt_path": "last", "callbacks": {"likelihood": {"every_n_epochs": 5}}}
    assert config_changes(saved, now) == {"data.n_train": (2000, 50000), "model.new": ("<absent>", 1),
                                          "model.optimizer.betas": ([0.9, 0.99], [0.9, 0.999]), "seed": (0, 1)}
    assert config_changes(saved, {**saved, "trainer": {"max_steps": 100}, "logger": None}) == {}
    with pytest.raises(ValueError, match=r"data.n_train: 2000 saved, 50000 now.*model.new.*seed: 0 saved, 1 now.*"
                                         r"new output directory.*resume.allow_config_change=\[data.n_train,model.new,"
                                         r"model.optimizer.betas,seed\]"):
        check_resume_config(saved, now, [], Path("/runs/x"))
    # a key, or the group above it, continues deliberately: the changes come back to be recorded
    allowed = check_resume_config(saved, now, ["data.n_train", "model", "seed"], Path("/runs/x"))
    assert set(allowed) == {"data.n_train", "model.new", "model.optimizer.betas", "seed"}
    with pytest.raises(ValueError, match=r"\(seed: 0 saved, 1 now\).*'resume.allow_config_change=\[data,model,seed\]'"):
        check_resume_config(saved, now, ["data", "model"], Path("/runs/x"))


def test_a_rerun_on_other_data_is_refused_by_key_and_a_deliberate_one_is_recorded(train_with, tmp_path):
    train_with(*TINY, "test=false")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"data.n_train: 50000 saved, 2000 now.*"
                                         r"resume.allow_config_change=\[data.n_train\]"):
        train_with(*TINY, "test=false", "data.n_train=2000", "trainer.max_epochs=2")
    with pytest.raises(ValueError, match=r"seed: 0 saved, 3 now"):
        train_with(*TINY, "test=false", "seed=3")
    assert snapshot(tmp_path) == before
    train_with(*TINY, "test=false", "data.n_train=2000", "trainer.max_epochs=2",
               "resume.allow_config_change=[data.n_train]")
    record = record_of(tmp_path)
    assert record["attempts"][-1]["config_changes"] == {"data.n_train": {"saved": 50000, "now": 2000}}
    assert record["attempts"][-1]["resume_step"] == 3 and "config_changes" not in record["attempts"][0]
    assert record["config"]["data"]["n_train"] == 2000


def test_a_rerun_of_a_run_that_never_trained_may_fix_its_settings(train_with, tmp_path):
    # e.g. an alignment run whose setup step wrote run.json, then stopped on a bad data setting: the fixed rerun runs
    (tmp_path / "run.json").write_text(json.dumps({"status": "failed", "global_step": 0, "history": {}, "seed": 0,
                                                   "config": {"seed": 0, "data": {"n_train": 1}}}))
    train_with(*TINY, "test=false")
    record = record_of(tmp_path)
    assert record["status"] == "completed" and record["config"]["data"]["n_train"] == 50000


def _system_payload(marker: Path):
    class RunsAShellCommand:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return RunsAShellCommand()


def test_a_payload_refusal_says_refused_in_the_installed_torchs_wording(tmp_path):
    from divlab.checkpoints import CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "system.ckpt"
    torch.save({"state_dict": {}, "x": _system_payload(marker)}, ckpt)
    with pytest.raises(Exception) as torch_error:  # what the installed torch says of it
        torch.load(ckpt, weights_only=True)
    global_name = f"{os.system.__module__}.system"  # posix.system on Linux
    assert global_name in str(torch_error.value)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(ckpt)
    message = str(error.value)
    assert message.startswith(f"checkpoint {str(ckpt)!r} refused, not loaded: it asks to run {global_name}")
    assert "weights_only` set to `False" not in message and "Re-running" not in message
    assert not marker.exists()
    # another error naming a GLOBAL is no refusal: only the weights-only unpickler's is
    from divlab.checkpoints import refusal

    assert "unreadable (RuntimeError: GLOBAL x.y" in refusal(ckpt, RuntimeError("GLOBAL x.y broke"))
    # a file weights-only loading cannot read at all: unreadable, with torch's reason and without its advice
    import pickle

    with open(tmp_path / "pickled.ckpt", "wb") as file:
        pickle.dump({"a": 1}, file, protocol=4)
    with pytest.raises(CheckpointError, match=r"is unreadable \(UnpicklingError: Unsupported operand") as error:
        load_checkpoint(tmp_path / "pickled.ckpt")
    assert "weights_only` set to `False" not in str(error.value)


def test_a_policy_checkpoint_that_fails_to_load_is_named_with_its_key(tmp_path):
    import hydra

    junk = tmp_path / "run" / "checkpoints" / "last.ckpt"
    junk.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "x": _system_payload(tmp_path / "pwned")}, junk)
    config = {"_target_": "divlab.lightning_modules.reference_policy.preference_file",
              "path": str(tmp_path / "pairs.jsonl"), "policy": {"ckpt_path": str(junk), "data_dir": str(tmp_path)}}
    with pytest.raises(Exception, match=rf"policy.ckpt_path='{junk}': checkpoint '{junk}' refused, not loaded"):
        hydra.utils.instantiate(config)
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match=rf"policy.ckpt_path='{junk}': checkpoint '{junk}' is unreadable .*"
                                        "leave policy.ckpt_path null"):
        hydra.utils.instantiate(config)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("override, message", [
    ("seed=-1", "seed must be >= 0, got -1"),
    (f"seed={2**32}", f"seed must be <= {2**32 - 1}, got {2**32}"),
    ("callbacks.model_checkpoint.monitor=val/nlll",
     r"callbacks.model_checkpoint.monitor='val/nlll' is logged by nothing in this run: the model \(VAE\) logs "
     r"val/loss, val/kl .*did you mean val/nll\?"),
])
def test_the_last_unclear_bad_values_are_named_before_anything_is_written(train_with, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        train_with(*TINY, override)
    assert not (tmp_path / "run.json").exists() and not (tmp_path / "checkpoints").exists()


def test_monitors_are_checked_against_what_the_model_and_callbacks_declare():
    # the classes stand for their instances here: only their declared validation_metrics are read
    from lightning.pytorch.callbacks import ModelCheckpoint

    from divlab.callbacks.likelihood import LikelihoodEvaluator
    from divlab.callbacks.periodic import check_monitors_are_logged
    from divlab.lightning_modules.autoregressive import AutoregressiveModel
    from divlab.lightning_modules.reward_model import RewardModel


    check_monitors_are_logged([ModelCheckpoint(monitor="val/bpc"), LikelihoodEvaluator()], AutoregressiveModel)
    check_monitors_are_logged([ModelCheckpoint(monitor="val/reward_model_accuracy")], RewardModel)
    check_monitors_are_logged([ModelCheckpoint(monitor="train/loss")], RewardModel)  # train/ metrics: not checked
    with pytest.raises(ValueError, match=r"monitor='val/acuracy' is logged by nothing.*logs val/loss, "
                                         r"val/reward_model_accuracy.*did you mean val/reward_model_accuracy\?"):
        check_monitors_are_logged([ModelCheckpoint(monitor="val/acuracy")], RewardModel)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("override", ["trainer.accelerator=gpu", "trainer=gpu", "trainer.accelerator=cuda"])
def test_a_gpu_asked_for_on_a_machine_without_one_points_to_trainer_cpu(train_with, tmp_path, override):
    with pytest.raises(ValueError, match=r"trainer.accelerator='(gpu|cuda)' asks for a GPU and this machine has none.*"
                                         r"use trainer=cpu"):
        train_with(*[o for o in TINY if o != "trainer=cpu"], override)
    assert not (tmp_path / "run.json").exists()


def test_an_unwritable_run_directory_is_named_with_its_key(tmp_path):
    from divlab.cli.hydra_app import run_once
    from divlab.cli.train import sweep_objective

    (tmp_path / "a_file").write_text("")
    run_dir = tmp_path / "a_file" / "run"
    with pytest.raises(SystemExit, match=rf"hydra.run.dir='{run_dir}' cannot be the output directory: Not a "
                                         r"directory.*choose a directory you can write to") as stop:
        run_once(sweep_objective, "train", [*TINY, f"hydra.run.dir={run_dir}"])
    assert stop.value.code != 0


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_a_run_directory_under_proc_is_named_with_its_key():
    from divlab.cli.writable_run_dir import UnwritableDirectory, check_writable_directory

    with pytest.raises(UnwritableDirectory, match=r"hydra.run.dir='/proc/divlab-run' cannot be the output directory"):
        check_writable_directory("hydra.run.dir", "/proc/divlab-run")


def test_conv_networks_on_points_suggest_networks_mlp(train_with, tmp_path):
    # the default experiment's networks are conv: a GAN on ring8 without networks=mlp
    with pytest.raises((ValueError, InstantiationException), match=r"DCGAN \(networks=conv\) needs image data.*"
                                                                   r"got \(2,\); .*use networks=mlp"):
        train_with("data=ring8", "model=gan", "divergence=js", "debug=tiny", "trainer=cpu", "logger=csv")
    with pytest.raises((ValueError, InstantiationException), match=r"ConvEncoder \(networks=conv\).*networks=mlp"):
        train_with("data=ring8", "model=vae", "debug=tiny", "trainer=cpu", "logger=csv")
    assert not (tmp_path / "run.json").exists()


def test_a_nan_before_any_checkpoint_says_none_exists(train_with, tmp_path, monkeypatch):
    from divlab.callbacks.nan_guard import NonFiniteError

    _stop_at(monkeypatch, 1, lambda loss: loss * float("nan"))
    with pytest.raises(NonFiniteError, match="with no checkpoint written yet") as error:
        train_with(*TINY)
    assert "keeping the last finite checkpoint" not in str(error.value)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))
    monkeypatch.undo()
    _stop_at(monkeypatch, 4, lambda loss: loss * float("nan"))
    with pytest.raises(NonFiniteError, match=r"keeping the last finite checkpoint \(.*checkpoints/.*\.ckpt\)"):
        train_with(*TINY, "trainer.max_epochs=2", out=tmp_path / "later")


def test_a_resume_removes_the_temporary_file_of_a_write_killed_midway(train_with, tmp_path):
    from divlab.atomic_files import atomic_write

    train_with(*TINY, "test=false")
    checkpoints = tmp_path / "checkpoints"
    # what SIGKILL inside AtomicCheckpointIO's write leaves: the temporary sibling, named by atomic_write
    writer = atomic_write(checkpoints / "last.ckpt")
    file = writer.__enter__()
    file.write(b"\0" * 1_000_000)
    file.flush()
    [temporary] = checkpoints.glob(".last.ckpt.*.tmp")
    unrelated = checkpoints / ".notes.txt.tmp"  # not a checkpoint's temporary: kept
    unrelated.write_text("mine")
    train_with(*TINY, "test=false", "trainer.max_epochs=2")
    assert not temporary.exists() and unrelated.exists()
    assert record_of(tmp_path)["attempts"][-1]["resume_step"] == 3
    file.close()


def test_a_resume_after_a_kill_between_the_epoch_checkpoint_and_last_leaves_no_stale_checkpoint(train_with, tmp_path):
    import shutil

    checkpoints = tmp_path / "checkpoints"
    train_with(*TINY, "test=false")
    shutil.copy2(checkpoints / "last.ckpt", tmp_path / "last_at_3.ckpt")
    train_with(*TINY, "test=false", "trainer.max_epochs=2")
    # killed after the validation at step 6 wrote its epoch checkpoint, before it wrote last.ckpt
    shutil.copy(tmp_path / "last_at_3.ckpt", checkpoints / "last.ckpt")
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 3
    ahead = [p.name for p in checkpoints.glob("epoch*.ckpt")]
    assert len(ahead) == 1 and torch.load(checkpoints / ahead[0], weights_only=True)["global_step"] == 6
    train_with(*TINY, "test=false", "trainer.max_epochs=3")
    assert record_of(tmp_path)["attempts"][-1]["resume_step"] == 6
    names = sorted(p.name for p in checkpoints.glob("*.ckpt"))
    assert len(names) == 2 and "last.ckpt" in names, names  # save_top_k=1: the best and last.ckpt, nothing stale
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 9
