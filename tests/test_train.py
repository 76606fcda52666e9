"""Smoke runs through train.run with Hydra's compose API: every experiment, W&B offline, resume, errors."""
import json
import math
import os
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException

from conftest import CONFIG_DIR, EXPERIMENTS, compose_config
from divlab.tracking.wandb_offline import find_offline_runs, read_offline_run

RUN_KEYS = {"family", "divergence", "data", "seed", "status", "config", "metrics", "best", "checkpoints",
            "git_commit", "started_at", "finished_at", "wandb"}


# What every preset's smoke run returned when it was last recorded: a refactor must give the same seeds the same
# metrics to the digit. Rewrite it (only for a deliberate change of behaviour) with
#   DIVLAB_RECORD_SMOKE_METRICS=1 python -m pytest tests/test_train.py -k fast_dev_run
SMOKE_METRICS = Path(__file__).parent / "fixtures" / "smoke_metrics.json"


def check_smoke_metrics(experiment: str, metrics: dict) -> None:
    metrics = {k: v for k, v in metrics.items() if not k.startswith("time/")}  # wall clock, not behaviour
    recorded = json.loads(SMOKE_METRICS.read_text()) if SMOKE_METRICS.exists() else {}
    if os.environ.get("DIVLAB_RECORD_SMOKE_METRICS"):
        recorded[experiment] = {k: float(v) for k, v in sorted(metrics.items())}
        SMOKE_METRICS.parent.mkdir(exist_ok=True)
        SMOKE_METRICS.write_text(json.dumps(dict(sorted(recorded.items())), indent=1) + "\n")
        return
    expected = recorded[experiment]
    assert sorted(metrics) == sorted(expected), f"{experiment}: the smoke run logs other metrics than recorded"
    changed = {k: (float(metrics[k]), v) for k, v in expected.items()
               if not math.isclose(float(metrics[k]), v, rel_tol=1e-4, abs_tol=1e-6)
               and not (math.isnan(v) and math.isnan(float(metrics[k])))}
    assert not changed, f"{experiment}: same seed, other metrics (now, recorded): {changed}"


# The family each LightningModule records in run.json (what compare.py and W&B tags group by).
FAMILY_OF_CLASS = {"VAE": "vae", "GAN": "gan", "DDPM": "ddpm", "ScoreSDE": "score", "AutoregressiveModel": "ar",
                   "DPO": "align", "PPO": "align", "RewardModel": "align"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_with_fast_dev_run(train_with, tmp_path, experiment):
    cfg, metrics = train_with(f"experiment={experiment}", "debug=fdr", "trainer=cpu")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed"
    assert RUN_KEYS <= set(record)
    assert record["family"] == FAMILY_OF_CLASS[cfg.model._target_.split(".")[-1]]
    assert all(v == v for v in metrics.values()), metrics
    check_smoke_metrics(experiment, metrics)


# The grid-25 versions of the ring presets are `data=grid25` on them (they were presets of their own): each keeps
# its recorded smoke metrics.
ON_THE_GRID = {"gan_grid25": "gan_ring8", "study_grid25": "study_ring8", "study_grid25_packing": "study_ring8_packing",
               "study_grid25_reference": "study_ring8_reference"}


@pytest.mark.parametrize("recorded, experiment", ON_THE_GRID.items())
def test_every_grid_version_runs_with_fast_dev_run_as_its_recorded_preset(train_with, tmp_path, recorded, experiment):
    cfg, metrics = train_with(f"experiment={experiment}", "data=grid25", "debug=fdr", "trainer=cpu")
    assert cfg.experiment_name == recorded and cfg.data.name == "grid25"
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "completed"
    check_smoke_metrics(recorded, metrics)


def test_tiny_run_leaves_checkpoint_samples_record_and_readable_wandb_run(train_with, tmp_path):
    cfg, metrics = train_with("experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=wandb", "seed=3")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed" and record["seed"] == 3
    assert (record["family"], record["divergence"], record["data"]) == ("vae", "elbo", "ring8")
    assert Path(record["checkpoints"]["last"]).is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / "toy_metrics").glob("test_step*.png"))  # the 2-D presets' scatter plots
    assert {"train/loss", "val/nll", "test/nll"} <= set(record["metrics"])
    assert set(record["best"]) == {"val/loss"}  # the preset's checkpoint monitor: the validation ELBO
    # The last toy evaluation's mode histogram: high-quality samples per mode, as many as the HQ share says.
    histogram = record["mode_histogram"]["test"]
    n_samples = cfg.callbacks.toy_metrics.n_samples
    assert histogram["step"] == record["global_step"] and len(histogram["counts"]) == 8
    assert sum(histogram["counts"]) == round(record["metrics"]["test/high_quality_percent"] * n_samples / 100)

    runs = find_offline_runs(tmp_path)
    assert len(runs) == 1 and record["wandb"]["mode"] == "offline"
    run = read_offline_run(runs[0])
    assert run.run_id == record["wandb"]["id"]
    assert run.group == "vae_ring8" and {"family:vae", "divergence:elbo", "data:ring8", "seed:3"} <= set(run.tags)
    assert run.config["model"]["latent_dim"] == cfg.model.latent_dim
    # Every family's config carries the same top-level run keys, and the run a readable name.
    assert {key: run.config["run"][key] for key in ("family", "divergence", "data", "name")} == {
        "family": "vae", "divergence": "elbo", "data": "ring8", "name": "vae-elbo-ring8-seed3"}
    assert not {"latent_dim", "family", "lr"} & set(run.config)  # no flat copies of the module's hyperparameters
    assert run.metric("val/nll")[-1] == pytest.approx(record["metrics"]["val/nll"], rel=1e-5)
    assert min(run.metric("val/loss")) == pytest.approx(record["best"]["val/loss"], rel=1e-5)  # mode: min
    assert len(run.metric("train/loss")) == 3
    assert run.images and all(Path(p).stat().st_size > 0 for p in run.images)


def test_rerun_in_same_output_dir_resumes_step_and_wandb_id(train_with, tmp_path):
    train_with("experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=wandb", "test=false")
    first = json.loads((tmp_path / "run.json").read_text())
    _, metrics = train_with("experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=wandb", "test=false",
                            "ckpt_path=last", "trainer.max_epochs=2")
    second = json.loads((tmp_path / "run.json").read_text())
    assert second["wandb"]["id"] == first["wandb"]["id"]
    steps = [step for step, _ in second["history"]["train/loss"]]
    assert steps == sorted(steps) and steps[-1] >= 5
    import torch

    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_unknown_group_option_lists_valid_ones(tmp_path):
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as error:
        compose_config(tmp_path, ["model=flow"])
    assert "reward_model" in str(error.value) and "flow" in str(error.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.optimizer.lr=-0.001", "optimizer.lr must be > 0, got -0.001"),
        ("data.batch_size=0", "data.batch_size must be > 0, got 0"),
        ("model.beta=-1", "model.beta must be >= 0, got -1"),
    ],
)
def test_impossible_values_fail_before_training(train_with, tmp_path, override, message):
    with pytest.raises((ValueError, InstantiationException), match=message):
        train_with("experiment=vae_ring8", "debug=fdr", override)
    assert not (tmp_path / "checkpoints").exists()


def test_corrupt_checkpoint_fails_early_and_is_kept(train_with, tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="last.ckpt' is unreadable"):
        train_with("experiment=vae_ring8", "debug=tiny", "logger=csv")
    assert ckpt.read_bytes() == b"not a checkpoint"


def test_missing_checkpoint_path_is_named(train_with, tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_path='/nope.ckpt' does not exist"):
        train_with("experiment=vae_ring8", "debug=fdr", "ckpt_path=/nope.ckpt")


@pytest.mark.parametrize("exception, status", [(RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")])
def test_a_run_that_stops_early_records_its_status(train_with, tmp_path, monkeypatch, exception, status):
    from divlab.lightning_modules.vae import VAE

    original = VAE.training_step

    def flaky_step(self, x, batch_idx):
        if batch_idx == 2:
            raise exception
        return original(self, x, batch_idx)

    monkeypatch.setattr(VAE, "training_step", flaky_step)
    try:
        train_with("experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=csv")
    except (RuntimeError, SystemExit):  # Lightning exits with SystemExit(1) after a graceful Ctrl-C
        pass
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == status and record["finished_at"]
    assert record["metrics"]["train/loss"] > 0


def _leveldb_file(path: Path, records) -> bytes:
    """A `.wandb` file holding each protobuf record whole (type FULL), as W&B writes short records."""
    import struct
    import zlib

    from divlab.tracking.wandb_offline import FULL, HEADER

    data = HEADER
    for record in records:
        payload = record.SerializeToString()
        data += struct.pack("<IHB", zlib.crc32(payload), len(payload), FULL) + payload
    path.write_bytes(data)
    return data


def test_offline_reader_waits_for_the_exit_record_and_ignores_a_half_written_tail(tmp_path):
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = tmp_path / "offline-run-x"
    run_dir.mkdir()
    run_record, summary, exit_record = pb.Record(), pb.Record(), pb.Record()
    run_record.run.run_group = "study"
    summary.summary.update.add(key="val/nll", value_json="1.5")
    exit_record.exit.exit_code = 0
    data = _leveldb_file(run_dir / "run-abc.wandb", [run_record, summary, exit_record])
    run = read_offline_run(run_dir, wait_seconds=0)
    assert (run.run_id, run.group, run.summary) == ("abc", "study", {"val/nll": 1.5})

    (run_dir / "run-abc.wandb").write_bytes(data[:-3])  # the exit record is still being written
    run = read_offline_run(run_dir, wait_seconds=0.3)
    assert run.summary == {"val/nll": 1.5}


@pytest.mark.parametrize("study, generator", [("study_ring8", "mlp.MLP"), ("study_ring8 data=grid25", "mlp.MLP"),
                                              ("study_fashion_mnist", "dcgan.DCGANGenerator")])
def test_study_members_get_networks_for_the_studys_data(tmp_path, study, generator):
    experiment, *data = study.split()
    cfg = compose_config(tmp_path, [f"experiment={experiment}", *data, "model=gan", "divergence=js"])
    assert cfg.model.generator._target_.endswith(generator) and cfg.model.divergence == "js"


def test_progress_is_logged_as_lines_when_output_is_not_a_terminal(train_with, caplog):
    import logging

    from divlab.callbacks.progress import LogLinesProgress, progress_bar

    assert isinstance(progress_bar(), LogLinesProgress)  # pytest captures stdout: not a TTY
    with caplog.at_level(logging.INFO, logger="divlab.progress"):
        train_with("experiment=gan_ring8", "debug=tiny", "logger=csv", "callbacks.progress_bar.every_n_steps=1")
    lines = [r.getMessage() for r in caplog.records if r.name == "divlab.progress"]
    assert sum("epoch 0 batch" in line and "train/generator_loss" in line for line in lines) == 3
    assert any("validation:" in line and "time/val/" in line for line in lines)
    assert any(line.startswith("test:") and "test/modes_covered" in line for line in lines)


def test_validation_lines_show_only_what_that_validation_logged(caplog):
    """A metric logged every other epoch appears in those epochs' lines only (Lightning's callback_metrics
    keep its last value, which the line must not pass off as this epoch's)."""
    import logging

    import lightning as L
    import torch

    from divlab.callbacks.progress import LogLinesProgress

    class EveryOtherEpoch(L.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch % 2 == 0:
                pl_module.log("val/rare", float(trainer.current_epoch + 10))

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def training_step(self, batch, batch_idx):
            return (self.w * batch).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", (self.w * batch).sum())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader([torch.ones(1)], batch_size=None)
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[LogLinesProgress(), EveryOtherEpoch()])
    with caplog.at_level(logging.INFO, logger="divlab.progress"):
        trainer.fit(Model(), data, data)
    lines = [r.getMessage() for r in caplog.records if "validation:" in r.getMessage()]
    assert len(lines) == 3 and all("val/loss" in line for line in lines)
    assert "val/rare 10" in lines[0] and "val/rare" not in lines[1] and "val/rare 12" in lines[2]


def test_extras_show_the_config_tree_and_can_require_tags(tmp_path, caplog):
    import logging

    from divlab.config_tree import check_tags, config_tree, show_config

    cfg = compose_config(tmp_path, ["experiment=gan_ring8"])
    assert cfg.extras.print_config and not cfg.extras.enforce_tags
    labels = [str(child.label) for child in config_tree(cfg).children]
    assert labels[:3] == ["data", "model", "callbacks"] and "trainer" in labels
    with caplog.at_level(logging.INFO, logger="divlab.train"):
        show_config(cfg)
    assert any("divlab.lightning_modules.gan.GAN" in r.getMessage() for r in caplog.records)
    check_tags(cfg)  # not enforced
    enforced = compose_config(tmp_path, ["experiment=gan_ring8", "extras.enforce_tags=true"])
    with pytest.raises(ValueError, match=r"extras.enforce_tags=true but no tags were given; pass e.g. tags=\["):
        check_tags(enforced)
    check_tags(compose_config(tmp_path, ["experiment=gan_ring8", "extras.enforce_tags=true", "tags=[baseline]"]))


def test_every_always_on_callback_is_in_the_trainer_and_the_tree_lists_them(train_with, tmp_path, monkeypatch,
                                                                          caplog):
    import logging

    import divlab.cli.train
    from divlab.cli.trainer_parts import ALWAYS_ON_CALLBACKS, build_trainer
    from divlab.config_tree import config_tree

    built = []

    def keep(*args, **kwargs):
        built.append(build_trainer(*args, **kwargs)[0])
        return built[-1], None

    monkeypatch.setattr(divlab.cli.train, "build_trainer", keep)
    with caplog.at_level(logging.INFO):
        cfg, _ = train_with("experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=none")
    names = [type(c).__name__ for c in built[0].callbacks]
    assert sorted(n for n in names if n in ALWAYS_ON_CALLBACKS) == sorted(ALWAYS_ON_CALLBACKS)
    assert "RunRecord" in ALWAYS_ON_CALLBACKS and "ModelCheckpoint" in names  # the config's own are there too
    labels = [str(child.label) for child in config_tree(cfg, ALWAYS_ON_CALLBACKS).children]
    assert labels[labels.index("callbacks") + 1] == "callbacks (always on)"
    # Saving the whole state is what SaveLast means: Lightning's 'weights_only was not set' is not logged.
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not [r for r in caplog.records if "weights_only" in r.getMessage()]


def test_many_loggers_write_csv_tensorboard_and_wandb_together(train_with, tmp_path):
    train_with("experiment=gan_ring8", "debug=tiny", "logger=many_loggers")
    assert list((tmp_path / "csv").rglob("metrics.csv"))
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_the_documented_wandb_sweep_names_real_config_keys(tmp_path):
    import yaml
    from omegaconf import OmegaConf

    sweep = yaml.safe_load((CONFIG_DIR.parent / "docs" / "wandb_sweep.yaml").read_text())
    assert "${args_no_hyphens}" in sweep["command"]  # Hydra takes key=value, not --key=value
    fixed = [f"{key}={spec['value']}" for key, spec in sweep["parameters"].items() if "value" in spec]
    cfg = compose_config(tmp_path, fixed)
    for key, spec in sweep["parameters"].items():
        if "value" not in spec:  # the searched ones must be keys of the composed config (groups are choices)
            assert OmegaConf.select(cfg, key, default=None) is not None, key
    assert sweep["metric"]["name"] == "val/js"


@pytest.mark.parametrize("overrides, message", [
    (["callbacks.likelihood.every_n_epochs=2", "callbacks.model_checkpoint.monitor=val/nll"],
     r"callbacks.model_checkpoint.monitor='val/nll' is logged by callbacks.likelihood only every 2 epochs"),
    (["callbacks.toy_metrics.every_n_epochs=5", "callbacks.model_checkpoint.monitor=val/modes_covered",
      "callbacks.model_checkpoint.mode=max"],
     r"callbacks.model_checkpoint.monitor='val/modes_covered' is logged by callbacks.toy_metrics only every 5 epochs"),
])
def test_a_checkpoint_monitor_logged_only_every_n_epochs_is_refused_before_training(train_with, tmp_path, overrides,
                                                                                     message):
    # Lightning itself would raise at the first validation without the metric: after an epoch, before any checkpoint.
    with pytest.raises(ValueError, match=message):
        train_with("experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=csv", *overrides)
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))
    assert json.loads((tmp_path / "run.json").read_text())["global_step"] == 0
