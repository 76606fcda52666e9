"""Every DDP rank draws its own training noise.

Lightning starts every rank from the same random state: torchrun and SLURM start one process per rank,
each seeding with the run's `seed`, and `ddp_spawn` copies the parent's state into its workers. Left
alone, every rank then draws the same latents, timesteps and noise for its share of the global batch:
a GAN's fake batch on 2 GPUs is two copies of one half, a DDPM batch trains each timestep twice, and
adding GPUs adds no Monte Carlo samples. At the start of fit, after DDP has broadcast rank 0's
weights, each rank r > 0 reseeds torch (CPU and CUDA) from (run seed, r); rank 0 keeps the stream a
single-process run draws, so 1-process runs are unchanged to the bit.

Every family says whether its training step draws noise (`FamilyModule.draws_training_noise`: true for
VAE, GAN, DDPM, score SDE, PPO). The others (autoregressive, reward model, DPO) train deterministically given
the batch and keep the shared stream, which their text data relies on: `RandomWindows` draws one
window offset per global batch from it, the same on every rank, so a 2-process run sees exactly the
windows a 1-process run does.
"""
import lightning as L
import numpy as np
import torch

from divlab.lightning_modules.contracts import FamilyModule


def rank_seed(base_seed: int, rank: int) -> int:
    """A seed for `rank`'s noise, distinct from every (other seed, other rank) pair's (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([base_seed, rank]).generate_state(1, np.uint64)[0] >> 1)


class DistinctNoisePerRank(L.Callback):
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank > 0 and isinstance(pl_module, FamilyModule) and pl_module.draws_training_noise:
            torch.manual_seed(rank_seed(torch.initial_seed(), trainer.global_rank))
