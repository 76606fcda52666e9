"""Logging training scalars on logging steps only (step_logging.py, issue 22) trains the same networks and
writes the same values at the same steps as logging them on every step did."""
import functools

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger

from divlab.lightning_modules import ddpm, gan, vae
from divlab.lightning_modules.networks.mlp import MLP
from divlab.lightning_modules.networks.time_mlp import TimeMLP

ADAM = functools.partial(torch.optim.Adam, lr=1e-3)
SMALL_MLP = functools.partial(MLP, hidden=16)
FAMILIES = {
    "gan": (gan, lambda: gan.GAN((2,), SMALL_MLP, SMALL_MLP, ADAM, ADAM, noise_dim=4)),
    "vae": (vae, lambda: vae.VAE((2,), SMALL_MLP, SMALL_MLP, ADAM, latent_dim=2, likelihood="gaussian")),
    "ddpm": (ddpm, lambda: ddpm.DDPM((2,), functools.partial(TimeMLP, hidden=16, depth=1, time_dim=8), ADAM, T=50)),
}
N_BATCHES, LOG_EVERY = 45, 20


class RecordingLogger(Logger):
    """What a logger (run.json, W&B) receives: (step, metrics) per write."""

    def __init__(self):
        super().__init__()
        self.rows = []

    name, version = "recording", 0

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, {name: float(value) for name, value in metrics.items()}))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def train(family: str) -> tuple[list, list[torch.Tensor]]:
    _, make_module = FAMILIES[family]
    L.seed_everything(0)
    module = make_module()
    data = [torch.randn(16, 2) * 0.1 + 1.0 for _ in range(N_BATCHES)]
    logger = RecordingLogger()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=logger, log_every_n_steps=LOG_EVERY, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    return logger.rows, [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("family", FAMILIES)
def test_logging_on_logging_steps_writes_what_logging_every_step_wrote(family, monkeypatch):
    rows, weights = train(family)
    with monkeypatch.context() as patch:
        patch.setattr(FAMILIES[family][0], "is_logging_step", lambda module: True)
        every_step_rows, every_step_weights = train(family)

    assert [step for step, _ in rows] == [LOG_EVERY - 1, 2 * LOG_EVERY - 1]
    assert all(any(name.startswith("train/") for name in metrics) for _, metrics in rows)
    assert rows == every_step_rows
    assert all(torch.equal(a, b) for a, b in zip(weights, every_step_weights))
