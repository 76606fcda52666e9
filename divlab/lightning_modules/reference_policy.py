"""The frozen reference policy π_ref of the alignment family, loaded (never trained) here.

π_ref is a checkpoint of the sequence family (`model=ar`, any backbone), given as
`policy.ckpt_path=<run>/checkpoints/<name>.ckpt`, whose run's `run.json` (written by train.py beside
`checkpoints/`) says which backbone and which text data (and so which tokenizer) it was trained with;
or a Hugging Face causal LM, `policy.hf_model=` (`hf_policy.py`); or, when neither is given, the
default policy: the run of `experiment=reference_policy` (with `policy.overrides`), which the alignment
presets' setup step trains once and caches under `<data_dir>/alignment/` (`divlab/cli/reference_policy.py`).
"""
import copy
import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import NamedTuple

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from divlab.checkpoints import LAST, CheckpointError, check_readable, check_targets
from divlab.config_dir import compose_train
from divlab.datamodules.preferences import PreferenceDataModule
from divlab.lightning_modules.autoregressive import AutoregressiveModel
from divlab.lightning_modules.networks.gpt import with_bias_of_older_runs
from divlab.run_files import RUN_FILE

# The experiment preset (configs/experiment/) whose run is the default reference policy.
REFERENCE_PRESET = "reference_policy"
# What decides the default policy's weights, and so names its cache: everything else (callbacks, loggers) does not.
WEIGHT_DEFINING_KEYS = ("data", "model", "trainer", "seed")


def reference_run_config(data_dir: str, overrides=()) -> DictConfig:
    """The train config of `python train.py experiment=reference_policy OVERRIDES`, reading its data from `data_dir`,
    without a logger (the cached policy is data for other runs, not an experiment to follow); its output
    directory is for the caller to set."""
    cfg = compose_train([f"experiment={REFERENCE_PRESET}", *overrides, "~logger"])
    with open_dict(cfg):
        cfg.paths.data_dir = str(data_dir)
    return cfg


@functools.lru_cache(maxsize=8)
def default_policy_dir(data_dir: str, overrides: tuple[str, ...] = ()) -> Path:
    """Where the default policy of `overrides` is cached, trained or not: `<data_dir>/alignment/reference_policy-<key>`,
    the key a hash of the resolved settings that decide its weights (a changed preset is a new policy)."""
    cfg = reference_run_config(".", overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "."
    settings = {key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig) else cfg[key]
                for key in WEIGHT_DEFINING_KEYS}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(data_dir).expanduser() / "alignment" / f"{REFERENCE_PRESET}-{key}"


def default_policy_checkpoint(data_dir: str, overrides=()) -> Path:
    return default_policy_dir(str(Path(data_dir).expanduser()), tuple(str(o) for o in overrides)) / "checkpoints" / LAST


class ReferencePolicy(NamedTuple):
    model: AutoregressiveModel  # frozen, eval mode
    text: object  # the TextDataModule it was trained on: its tokenizer (encode/decode) and corpus
    ckpt_path: str


def load_reference_policy(ckpt_path: str | None = None, data_dir: str = "~/.cache/divlab/data",
                          hf_model: str | None = None, overrides=()) -> ReferencePolicy:
    """π_ref from `ckpt_path`, a Hugging Face causal LM `hf_model` (`hf_policy.py`), or the cached default policy."""
    data_dir = str(Path(data_dir).expanduser())
    if hf_model is not None:
        if ckpt_path is not None:
            raise ValueError("give policy.ckpt_path or policy.hf_model, not both")
        from divlab.lightning_modules.hf_policy import load_hf_policy  # needs the optional transformers

        model, text, source = load_hf_policy(str(hf_model), data_dir)
        return ReferencePolicy(freeze(model), text, source)
    if ckpt_path is None:
        ckpt_path = default_policy_checkpoint(data_dir, overrides)
        if not ckpt_path.is_file():
            raise FileNotFoundError(
                f"the default reference policy is not trained yet (no {ckpt_path}); train.py trains it in its "
                "setup step (configs/policy/default.yaml: setup.reference_policy), or call "
                "divlab.cli.reference_policy.prepare_reference_policy(**policy) first")
    return _load(str(Path(ckpt_path).expanduser()), data_dir)


def forget_loaded_policies() -> None:
    """Empty the caches of loaded policies (`_load`'s, and `load_hf_policy`'s once imported): the next load builds π_ref
    again, drawing from the global stream as a first load does. Every run's setup step calls it, so each job of a
    sweep sees the draws of the same job run alone."""
    _load.cache_clear()
    default_policy_dir.cache_clear()
    hf_policy = sys.modules.get("divlab.lightning_modules.hf_policy")  # imported only with the optional transformers
    if hf_policy is not None:
        hf_policy.load_hf_policy.cache_clear()


@functools.lru_cache(maxsize=4)
def _load(ckpt_path: str, data_dir: str) -> ReferencePolicy:
    """Cached: the data and the model of a run share one π_ref (each run's setup step empties the cache)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"policy.ckpt_path={ckpt_path!r} does not exist; pass a checkpoint of the sequence family "
            "(python train.py experiment=char_gpt writes <run>/checkpoints/last.ckpt), or leave "
            "policy.ckpt_path null to use the default reference policy"
        )
    try:
        check_readable(path)
    except CheckpointError as error:
        raise ValueError(f"policy.ckpt_path={ckpt_path!r}: {error}; pass a checkpoint a sequence-family run wrote "
                         "(<run>/checkpoints/last.ckpt), or leave policy.ckpt_path null to use the default reference "
                         "policy") from None
    run_json = path.parent.parent / RUN_FILE
    if not run_json.is_file():
        raise ValueError(f"policy.ckpt_path={ckpt_path!r}: no {RUN_FILE} in {path.parent.parent} to say which "
                         "backbone and text data it was trained with (expected <run>/checkpoints/<ckpt>)")
    config = json.loads(run_json.read_text())["config"]
    if "backbone" not in (config.get("model") or {}) or "data" not in config:
        raise ValueError(f"policy.ckpt_path={ckpt_path!r} is not a sequence-family run (model.backbone and data "
                         f"missing from {run_json}); train one with model=ar")
    check_targets({"data": config["data"], "backbone": config["model"]["backbone"]}, str(run_json))
    text = hydra.utils.instantiate({**config["data"], "data_dir": data_dir})
    backbone = hydra.utils.instantiate(with_bias_of_older_runs(config["model"]["backbone"]))
    model = AutoregressiveModel.load_from_checkpoint(path, map_location="cpu", backbone=backbone, optimizer=None,
                                                     weights_only=True)
    if model.hparams.vocab_size != text.vocab_size:
        raise ValueError(f"policy.ckpt_path={ckpt_path!r} has vocab_size {model.hparams.vocab_size} but its "
                         f"data's tokenizer has {text.vocab_size}")
    return ReferencePolicy(freeze(model), text, ckpt_path)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def trainable_copy(reference: ReferencePolicy) -> AutoregressiveModel:
    """π initialised at π_ref (the usual start of both RLHF and DPO)."""
    policy = copy.deepcopy(reference.model)
    policy.requires_grad_(True)
    return policy.train()


def preference_file(policy: dict, path: str, **datamodule_kwargs) -> PreferenceDataModule:
    """A user's JSON/JSONL pairs (`data=preferences data.path=...`), tokenised by the reference policy's tokenizer."""
    reference = load_reference_policy(**policy)
    datamodule_kwargs.setdefault("max_length", reference.model.block_size - 1)  # + BOS fits the context
    return PreferenceDataModule(reference.text.encode, path=path, decode=reference.text.decode, **datamodule_kwargs)
