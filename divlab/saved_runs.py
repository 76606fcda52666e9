"""Rebuild what a run directory holds: its data and model from the saved config, the weights from a checkpoint.

A config read back from disk is checked to name only divlab code or torch/Lightning classes before anything is
instantiated from it, and checkpoints load with `weights_only=True` (`divlab.checkpoints`).
"""
from pathlib import Path
from typing import NamedTuple

import hydra
from omegaconf import DictConfig, OmegaConf

from divlab.checkpoints import LAST, check_matches, check_readable, check_targets
from divlab.lightning_modules.networks.gpt import with_bias_of_older_runs
from divlab.run_files import RUN_FILE, read_run_record

SAVED_HYDRA_CONFIG = Path(".hydra") / "config.yaml"


class LoadedRun(NamedTuple):
    config: DictConfig  # the run's resolved config
    datamodule: object  # not set up yet: call `setup()` or hand it to a Trainer
    model: object  # the checkpoint's weights loaded, in eval mode


def saved_config(run_dir: Path) -> DictConfig | None:
    """The resolved config a run saved (`run.json`, else `.hydra/config.yaml`), its `_target_`s checked;
    None when the directory has neither."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    if record and record.get("config"):
        check_targets(record["config"], str(run_dir / RUN_FILE))
        return _as_trained(record["config"])
    hydra_config = run_dir / SAVED_HYDRA_CONFIG
    if not hydra_config.is_file():
        return None
    config = OmegaConf.to_container(OmegaConf.load(hydra_config))
    check_targets(config, str(hydra_config))
    return _as_trained(config)


def _as_trained(config: dict) -> DictConfig:
    """A saved config with the settings its networks were trained with made explicit (`with_bias_of_older_runs`)."""
    model = config.get("model") or {}
    if isinstance(model.get("backbone"), dict):
        config = {**config, "model": {**model, "backbone": with_bias_of_older_runs(model["backbone"])}}
    return OmegaConf.create(config)


def build_data_and_model(data_cfg, model_cfg) -> tuple:
    """(datamodule, model) as `train` builds them: the model is told the data's sample shape."""
    datamodule = hydra.utils.instantiate(data_cfg)
    model = hydra.utils.instantiate(model_cfg, data_shape=tuple(datamodule.sample_shape), _convert_="all")
    return datamodule, model


def load_run(run_dir, ckpt_path=None, data_dir: str | None = None) -> LoadedRun:
    """(config, datamodule, model) of the run in `run_dir`, the model holding the weights of `ckpt_path`
    (default `<run_dir>/checkpoints/last.ckpt`). `data_dir` reads the data from elsewhere than the run did."""
    run_dir = Path(run_dir).expanduser()
    config = saved_config(run_dir)
    if config is None:
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory: it has no {RUN_FILE} or "
                                f"{SAVED_HYDRA_CONFIG} to rebuild the run from")
    ckpt_path = Path(ckpt_path).expanduser() if ckpt_path is not None else run_dir / "checkpoints" / LAST
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"no checkpoint {str(ckpt_path)!r} (a debug=fdr run or trainer.enable_checkpointing"
                                "=false saves none); pass ckpt_path= one of the run's checkpoints")
    checkpoint = check_readable(ckpt_path)
    data_cfg = config.data if data_dir is None else OmegaConf.merge(config.data, {"data_dir": data_dir})
    # the checkpoint holds the weights: a model is rebuilt without the checkpoint it was started from
    model_cfg = OmegaConf.merge(config.model, {"init_from": None}) if "init_from" in config.model else config.model
    # a vocabulary learned from the data at fit time (model.vocab_size=null) is in the checkpoint's hyperparameters
    saved_vocab = (checkpoint.get("hyper_parameters") or {}).get("vocab_size")
    if "vocab_size" in model_cfg and model_cfg.vocab_size is None and saved_vocab is not None:
        model_cfg = OmegaConf.merge(model_cfg, {"vocab_size": saved_vocab})
    datamodule, model = build_data_and_model(data_cfg, model_cfg)
    check_matches(checkpoint, model, ckpt_path)
    model.load_state_dict(checkpoint["state_dict"])
    return LoadedRun(config, datamodule, model.eval())
