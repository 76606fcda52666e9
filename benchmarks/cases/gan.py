"""The Fashion-MNIST GAN (DCGAN networks, non-saturating loss, batch of 128) as a benchmark case."""
import functools

import torch

from divlab.datamodules.images import ImageDataModule
from divlab.lightning_modules.gan import GAN
from divlab.lightning_modules.networks.dcgan import DCGANCritic, DCGANGenerator


def plain_step(module: GAN, optimizers, batch: torch.Tensor) -> None:
    """One critic step then one generator step on the same fake batch, as `GAN.training_step` with n_critic = 1."""
    generator_opt, critic_opt = optimizers
    fake = module.generator(module.noise(batch.shape[0]))
    out_real, out_fake = module.score(batch), module.score(fake.detach())
    critic_loss = module.objective.critic_loss(out_real, out_fake) + module.critic_penalty(batch, fake)
    critic_opt.zero_grad(set_to_none=True)
    critic_loss.backward()
    critic_opt.step()
    generator_loss = module.objective.generator_loss(out_real.detach(), module.score(fake))
    generator_opt.zero_grad(set_to_none=True)
    generator_loss.backward()
    generator_opt.step()


def gan_case(name: str, data, generator, critic, lr: float, noise_dim: int) -> dict:
    """A non-saturating GAN on `data` (set up here) with Adam(lr, β₁ 0.5) for both networks, as a case."""
    data.setup()
    adam = functools.partial(torch.optim.Adam, lr=lr, betas=(0.5, 0.999))
    module = GAN(data.sample_shape, generator, critic, adam, adam, divergence="non_saturating", noise_dim=noise_dim)
    return {"name": name, "module": module, "batch": next(iter(data.train_dataloader())), "plain_step": plain_step,
            "datamodule": data}


def make_case() -> dict:
    return gan_case("gan_dcgan_fashion_mnist", ImageDataModule("fashion_mnist", batch_size=128),
                    functools.partial(DCGANGenerator, width=32), functools.partial(DCGANCritic, width=32),
                    lr=2e-4, noise_dim=64)
