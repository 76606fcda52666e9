"""A newcomer's first hour (issue 21): presets that compose and run as their comments say."""
import json

import pytest

from conftest import CONFIG_DIR, EXPERIMENTS, compose_config


def test_callbacks_none_runs_with_an_experiment_and_a_debug_preset(train_with, tmp_path):
    # Experiments and debug presets tune callbacks (callbacks.toy_metrics.n_samples=...); with
    # callbacks=none those tunings are all that is left of a callback and must not be built.
    train_with("experiment=gan_ring8", "callbacks=none", "debug=tiny", "trainer=cpu", "logger=csv")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed"
    assert not any(name.startswith(("val/modes", "test/modes")) for name in record["metrics"])


@pytest.mark.parametrize("logger", ["wandb", "csv"])
def test_fdr_writes_no_checkpoint_and_no_logger_run(train_with, tmp_path, logger):
    train_with("experiment=gan_ring8", "debug=fdr", "trainer=cpu", f"logger={logger}")
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not list(tmp_path.rglob("*.ckpt")), written
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "csv").exists(), written
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed" and not record.get("wandb")


def test_inception_features_without_torch_fidelity_fail_at_construction(tmp_path, monkeypatch):
    import sys

    from divlab.callbacks.image_metrics import ImageFeatureMetrics

    weights = tmp_path / "pt_inception-2015-12-05.pth"
    weights.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import torch_fidelity → ImportError
    with pytest.raises(ImportError, match=r"feature_net=inception needs torch-fidelity"
                       r".*pip install 'divlab\[inception\]'"):
        ImageFeatureMetrics(feature_net="inception", inception_weights=str(weights))
    ImageFeatureMetrics(feature_net="auto")  # the shipped classifiers need nothing more


# What one debug evaluation may cost at most, per callback (samples drawn, likelihood batches).
DEBUG_BOUNDS = {"samples": 16, "toy_metrics": 200, "image_metrics": 200}


@pytest.mark.parametrize("debug", ["tiny", "fdr"])
def test_debug_presets_bound_every_callback_of_every_experiment(tmp_path, debug):
    too_big = []
    for experiment in EXPERIMENTS:
        callbacks = compose_config(tmp_path, [f"experiment={experiment}", f"debug={debug}"]).callbacks or {}
        for name, bound in DEBUG_BOUNDS.items():
            n = (callbacks.get(name) or {}).get("n_samples")
            if n is not None and n > bound:
                too_big.append(f"{experiment}: callbacks.{name}.n_samples={n} > {bound}")
        likelihood = callbacks.get("likelihood") or {}
        for key in ("max_val_batches", "max_test_batches"):
            if likelihood and (likelihood.get(key) is None or likelihood.get(key) > 1):
                too_big.append(f"{experiment}: callbacks.likelihood.{key}={likelihood.get(key)} > 1")
    assert not too_big, "\n".join(too_big)


def test_early_stopping_stops_on_the_checkpointed_metric(train_with, tmp_path):
    # min_delta larger than any change: the first validation sets the best, the next one does not
    # improve on it, so with patience 1 the run stops after 2 of its 5 epochs.
    cfg, _ = train_with("experiment=vae_ring8", "callbacks=[default,early_stopping]", "debug=tiny", "trainer=cpu",
                        "logger=csv", "trainer.max_epochs=5", "callbacks.early_stopping.patience=1",
                        "callbacks.early_stopping.min_delta=1e9")
    assert cfg.callbacks.early_stopping.monitor == cfg.callbacks.model_checkpoint.monitor
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["history"]["train/loss"][-1][0] == 2 * 3  # 2 epochs of debug=tiny's 3 batches, not 5


def test_debug_overfit_drives_the_training_loss_down_on_one_batch(train_with, tmp_path):
    # 300 steps: at 150 whether the loss had left its plateau (~2.1) depended on the random stream (seeds 0-5: a
    # drop of 0.07-0.6); at 300 every seed's falls by 0.6 or more.
    train_with("experiment=vae_ring8", "debug=overfit", "trainer=cpu", "logger=csv", "trainer.max_epochs=300")
    record = json.loads((tmp_path / "run.json").read_text())
    losses = [value for _, value in record["history"]["train/loss"]]
    assert record["status"] == "completed" and not list(tmp_path.rglob("*.ckpt"))
    assert losses[-1] < losses[0] - 0.3, losses


def test_debug_profiler_writes_where_the_time_goes(train_with, tmp_path):
    train_with("experiment=gan_ring8", "debug=profiler", "trainer=cpu", "logger=csv")
    report = (tmp_path / "fit-profile.txt").read_text()
    assert "run_training_batch" in report and "ToyDivergences.on_validation_epoch_end" in report


def test_optuna_search_composes_and_its_params_are_config_keys(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra: pip install 'divlab[optuna]'")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=gan_ring8", "hparams_search=gan_ring8_optuna"],
                      return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert cfg.optimized_metric == "val/js"
    for key in sweeper.params:  # a typo in a searched key would only show as an error in every trial
        assert OmegaConf.select(cfg, key, default=None) is not None, key


@pytest.mark.slow  # two real trials in a subprocess: ~30 s on 2 idle cores
def test_optuna_search_runs_two_trials_and_compare_keeps_them_apart(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra: pip install 'divlab[optuna]'")
    import subprocess
    import sys

    import compare
    from divlab.tracking.runs import load_runs

    sweep = tmp_path / "sweep"
    subprocess.run([sys.executable, "train.py", "experiment=gan_ring8", "hparams_search=gan_ring8_optuna", "debug=fdr",
                    "trainer=cpu", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"],
                   cwd=CONFIG_DIR.parent, check=True, capture_output=True, timeout=300)
    assert "best_value" in (sweep / "optimization_results.yaml").read_text()
    runs = load_runs([sweep])
    table = compare.compare(runs, tmp_path / "report")["table"]
    assert len(runs) == 2 and sorted(table.counts.values()) == [1, 1]
    assert "model.critic_optimizer.lr" in table.columns or "model.generator_optimizer.lr" in table.columns
