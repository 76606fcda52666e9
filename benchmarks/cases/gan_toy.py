"""The ring-of-8 GAN of the studies (MLP 3 × 128 generator and critic, non-saturating loss, batch 256):
tiny steps, where the framework's cost per step matters most."""
import functools

import torch

from benchmarks.cases.gan import plain_step
from divlab.datamodules.toy2d import Toy2DDataModule
from divlab.lightning_modules.gan import GAN
from divlab.lightning_modules.networks.mlp import MLP

__all__ = ["make_case", "plain_step"]


def make_case() -> dict:
    data = Toy2DDataModule("ring8", batch_size=256)
    data.setup()
    adam = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999))
    module = GAN(
        data.sample_shape,
        functools.partial(MLP, hidden=128, depth=3, activation="relu"),
        functools.partial(MLP, hidden=128, depth=3, activation="leaky_relu"),
        adam,
        adam,
        divergence="non_saturating",
        noise_dim=8,
    )
    return {"name": "gan_mlp_ring8 (batch 256)", "module": module, "batch": next(iter(data.train_dataloader())),
            "plain_step": plain_step, "datamodule": data}
