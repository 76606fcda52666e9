"""The alignment presets' setup step: the default reference policy, trained once as an ordinary run.

When no `policy.ckpt_path` or `policy.hf_model` is given, π_ref is the run of `experiment=reference_policy`
(a smaller `char_gpt`; `policy.overrides` changes it) — the same `train` entry, config and run directory as
`python train.py experiment=reference_policy` — trained by the setup step train.py runs after it has written the
alignment run's `run.json` (configs/policy/default.yaml: `setup.reference_policy`), into
`<data_dir>/alignment/reference_policy-<key>/` (`lightning_modules/reference_policy.default_policy_dir`), where
every later run, and every job of a sweep, finds it. Building a data or model config never trains it:
`load_reference_policy` only loads.
"""
import contextlib
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import open_dict

from divlab.atomic_files import atomic_directory
from divlab.cli.train import run
from divlab.lightning_modules.reference_policy import (
    REFERENCE_PRESET,
    default_policy_checkpoint,
    forget_loaded_policies,
    reference_run_config,
)

log = logging.getLogger("divlab.alignment")


def prepare_reference_policy(ckpt_path: str | None = None, hf_model: str | None = None,
                             data_dir: str = "~/.cache/divlab/data", overrides=()) -> None:
    """The setup step of every alignment run (its `policy` node's keys), before its data and model are built: forgets
    the policies an earlier run of this process loaded, then trains and caches the default policy if it is needed
    and missing. Building π_ref draws from the seeded global stream (a fresh backbone's initialisation, before the
    checkpoint's weights replace it), so a sweep's later jobs, finding it loaded, would train on other draws than
    the same job run alone."""
    forget_loaded_policies()
    if ckpt_path is None and hf_model is None:
        train_reference_policy_once(str(Path(data_dir).expanduser()), list(overrides or ()))


def train_reference_policy_once(data_dir: str, overrides=()) -> Path:
    """The cached default policy's checkpoint, trained here first when missing: `python train.py
    experiment=reference_policy OVERRIDES` into a temporary sibling of its cache directory, renamed into place
    when it completes (concurrent runs agree: the first to finish wins, and theirs is the same policy)."""
    ckpt = default_policy_checkpoint(data_dir, overrides)
    if ckpt.is_file():
        return ckpt
    run_dir = ckpt.parent.parent
    cfg = reference_run_config(data_dir, overrides)
    log.info("training the default reference policy once: experiment=%s %s(%d steps); cached in %s for every later "
             "run", REFERENCE_PRESET, "".join(f"{o} " for o in overrides), cfg.trainer.max_steps, run_dir)
    with atomic_directory(run_dir) as tmp, run_of_its_own():
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp)
        run(cfg)
    return ckpt


@contextlib.contextmanager
def run_of_its_own():
    """A run inside another run's setup, as if it ran alone, leaving the outer run as it was: the outer command
    line's Hydra job is not its job (its overrides do not name this run's group), and the seeds and random
    streams the inner run sets (`seed_everything`) are put back, so the outer run draws as it would had the
    policy been cached."""
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.instance()
    job, hydra_config.cfg = hydra_config.cfg, None
    seeds = {key: os.environ.get(key) for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():
            yield
    finally:
        hydra_config.cfg = job
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for key, value in seeds.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
