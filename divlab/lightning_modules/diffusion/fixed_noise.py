"""A diffusion loss on fixed noise: how the diffusion families evaluate their training objective."""
import torch


def loss_on_fixed_noise(loss, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
    """loss(x, generator=...).mean() with the generator seeded by the batch index: batch i gets the same
    timesteps and noise in every epoch, so `<split>/loss` compares across epochs and checkpoints."""
    return loss(x, generator=torch.Generator(device=x.device).manual_seed(batch_idx)).mean()
