"""The default experiment's VAE (conv, Fashion-MNIST batch of 128) as a benchmark case."""
import functools

import torch

from divlab.datamodules.images import ImageDataModule
from divlab.lightning_modules.networks.conv import ConvDecoder, ConvEncoder
from divlab.lightning_modules.vae import VAE


def plain_step(module: VAE, optimizers, batch: torch.Tensor) -> None:
    (optimizer,) = optimizers
    loss = module.negative_elbo(batch, module.hparams.beta)[0].mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def make_case() -> dict:
    data = ImageDataModule("fashion_mnist", batch_size=128)
    data.setup()
    module = VAE(
        data.sample_shape,
        functools.partial(ConvEncoder, width=32),
        functools.partial(ConvDecoder, width=32),
        functools.partial(torch.optim.Adam, lr=1e-3),
    )
    return {"name": "vae_conv_fashion_mnist", "module": module, "batch": next(iter(data.train_dataloader())),
            "plain_step": plain_step, "datamodule": data}
