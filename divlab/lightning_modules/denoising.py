"""What the diffusion families (DDPM, score SDE) share: train on a per-example `loss(x)`, evaluate that
same loss on fixed noise, sample with the configured sampler, one optimizer for all parameters."""
import lightning as L
import torch

from divlab.lightning_modules.optim import make_optimizer


class DenoisingFamily(L.LightningModule):
    """Subclasses set `SAMPLERS` (name → function(module, shape)) and define `loss(x, generator)` → [B]."""

    SAMPLERS: dict = {}

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, x: torch.Tensor, batch_idx: int):
        loss = self.loss(x).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, x: torch.Tensor, batch_idx: int):
        self.log_evaluation_loss("val", x, batch_idx)

    def test_step(self, x: torch.Tensor, batch_idx: int):
        self.log_evaluation_loss("test", x, batch_idx)

    def log_evaluation_loss(self, split: str, x: torch.Tensor, batch_idx: int) -> None:
        """Log `<split>/loss`, the training objective on the same noise and timesteps for a given batch
        in every epoch, so it compares across epochs and checkpoints."""
        loss = self.loss(x, torch.Generator(device=x.device).manual_seed(batch_idx)).mean()
        self.log(f"{split}/loss", loss, sync_dist=True, prog_bar=split == "val")

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.SAMPLERS[self.hparams.sampler](self, (n, *self.data_shape))

    def configure_optimizers(self):
        return make_optimizer(self.optimizer, self.parameters(), self.device)
