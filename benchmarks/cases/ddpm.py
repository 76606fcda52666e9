"""The ddpm_fashion_mnist experiment's DDPM (U-Net, Fashion-MNIST batch of 64) as a benchmark case."""
import torch

from benchmarks.cases.experiment import experiment_case
from divlab.lightning_modules.ddpm import DDPM
from divlab.lightning_modules.diffusion import diffusion_loss


def plain_step(module: DDPM, optimizers, batch: torch.Tensor) -> None:
    (optimizer,) = optimizers
    loss = diffusion_loss(module.denoiser, module.schedule, batch, module.hparams.target).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def make_case() -> dict:
    return experiment_case("ddpm_fashion_mnist", "ddpm_unet_fashion_mnist", plain_step)
