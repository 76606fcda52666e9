"""The char_s4d experiment's model (S4D backbone, Shakespeare, batch 12 × 64 chars) as a benchmark case.

`make_ar_case(experiment)` builds any autoregressive experiment's module and batch from its Hydra
config (without the LR scheduler, which the plain loop does not step); ar_mamba.py reuses it.
"""
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def plain_step(module, optimizers, batch: torch.Tensor) -> None:
    (optimizer,) = optimizers
    loss = -module.token_log_likelihoods(batch).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def make_ar_case(experiment: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "model.scheduler=null", "paths.output_dir=."])
    data = instantiate(cfg.data)
    data.setup("fit")
    module = instantiate(cfg.model, data_shape=tuple(data.sample_shape), vocab_size=data.vocab_size, _convert_="all")
    return {"name": experiment, "module": module, "batch": next(iter(data.train_dataloader())),
            "plain_step": plain_step, "datamodule": data}


def make_case() -> dict:
    return make_ar_case("char_s4d")
