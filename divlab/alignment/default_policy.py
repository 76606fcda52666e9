"""The default reference policy: a small character GPT trained once, in an explicit setup step.

When no `policy.ckpt_path` or `policy.hf_model` is given, π_ref is a character-level GPT of the
`char_gpt` recipe, smaller: the full `char_gpt` run (4×128, 2,000 steps) costs more CPU time than a
whole frontier should, while a 2-layer, 96-wide model after a thousand steps already writes word-like
text whose sentiment VADER can score, which is all the controlled task needs. It is trained on
Shakespeare by `prepare_reference_policy`, the setup step train.py runs after it has written the run's
`run.json` (configs/policy/default.yaml: `setup.reference_policy`), and cached under
`<data_dir>/alignment/`; every later run (and every member of a sweep) finds it there. Building a data
or model config never trains it: `reference.load_reference_policy` only loads.
"""
import functools
import hashlib
import json
import logging
from pathlib import Path

import hydra
import lightning as L
import torch

from divlab.atomic_files import atomic_directory
from divlab.callbacks.progress import progress_bar
from divlab.lightning_modules.autoregressive import AutoregressiveModel
from divlab.tracking.run_record import RUN_FILE

log = logging.getLogger("divlab.alignment")

# The char_gpt recipe (GPT, AdamW, Shakespeare at character level), smaller.
DEFAULT_POLICY = {"n_layer": 2, "n_head": 2, "n_embd": 96, "block_size": 64, "batch_size": 32,
                  "steps": 1200, "lr": 2.0e-3, "seed": 0}
DEFAULT_TEXT = {"_target_": "divlab.datamodules.text.TextDataModule", "tokenizer": "char"}


def default_policy_checkpoint(data_dir: str, settings: dict | None = None) -> Path:
    """Where the default policy of `settings` (over `DEFAULT_POLICY`) is cached, trained or not."""
    settings = {**DEFAULT_POLICY, **(settings or {})}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(data_dir).expanduser() / "alignment" / f"reference-{key}" / "checkpoints" / "last.ckpt"


def prepare_reference_policy(ckpt_path: str | None = None, hf_model: str | None = None,
                             data_dir: str = "~/.cache/divlab/data", default: dict | None = None) -> None:
    """Part of every alignment run's setup step (the `policy` node's keys): trains and caches the default
    policy when neither a checkpoint nor a Hugging Face model is given and it is not cached yet
    (`reference.setup_reference_policy` calls it, after forgetting the policies an earlier run loaded)."""
    if ckpt_path is None and hf_model is None:
        train_default_policy_once(str(Path(data_dir).expanduser()), default)


def train_default_policy_once(data_dir: str, settings: dict | None = None) -> Path:
    """The cached default policy's checkpoint, trained here first when missing (atomic, so concurrent runs agree)."""
    settings = {**DEFAULT_POLICY, **(settings or {})}
    ckpt = default_policy_checkpoint(data_dir, settings)
    if ckpt.is_file():
        return ckpt
    root = ckpt.parent.parent
    log.info("training the default reference policy once (%d steps of a %d-layer char GPT on Shakespeare); "
             "cached in %s for every later run", settings["steps"], settings["n_layer"], root)
    with atomic_directory(root) as tmp:  # another run that finishes first wins: its policy is the same one
        train_default_policy(settings, data_dir, tmp)
    return ckpt


def train_default_policy(settings: dict, data_dir: str, out: Path) -> None:
    """Maximum likelihood on Shakespeare's characters with the `ar` family, as `experiment=char_gpt` does."""
    data = {**DEFAULT_TEXT, "block_size": settings["block_size"], "batch_size": settings["batch_size"],
            "batches_per_epoch": settings["steps"]}
    backbone = {"_target_": "divlab.lightning_modules.networks.gpt.GPT", "_partial_": True,
                **{k: settings[k] for k in ("n_layer", "n_head", "n_embd")}}
    text = hydra.utils.instantiate({**data, "data_dir": data_dir})
    with torch.random.fork_rng():
        torch.manual_seed(settings["seed"])
        model = AutoregressiveModel((settings["block_size"],), hydra.utils.instantiate(backbone),
                                    functools.partial(torch.optim.AdamW, lr=settings["lr"]), vocab_size=text.vocab_size)
        trainer = L.Trainer(max_steps=settings["steps"], accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
                            callbacks=[progress_bar(every_n_steps=max(1, settings["steps"] // 10))])
        trainer.fit(model, train_dataloaders=text.train_dataloader())
    (out / "checkpoints").mkdir()
    trainer.save_checkpoint(out / "checkpoints" / "last.ckpt")
    (out / RUN_FILE).write_text(json.dumps({"family": "ar", "status": "completed",
                                            "config": {"model": {"backbone": backbone}, "data": data}}, indent=1))
