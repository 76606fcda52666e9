"""The ddpm_fashion_mnist experiment's DDPM (U-Net, Fashion-MNIST batch of 64) as a benchmark case."""
from pathlib import Path

import hydra
import torch
from hydra import compose, initialize_config_dir

from divlab.lightning_modules.ddpm import DDPM
from divlab.lightning_modules.diffusion import diffusion_loss

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def plain_step(module: DDPM, optimizers, batch: torch.Tensor) -> None:
    (optimizer,) = optimizers
    loss = diffusion_loss(module.denoiser, module.schedule, batch, module.hparams.target).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def make_case() -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=ddpm_fashion_mnist"])
    data = hydra.utils.instantiate(cfg.data)
    data.setup()
    module = hydra.utils.instantiate(cfg.model, data_shape=tuple(data.sample_shape), _convert_="all")
    return {"name": "ddpm_unet_fashion_mnist", "module": module, "batch": next(iter(data.train_dataloader())),
            "plain_step": plain_step, "datamodule": data}
