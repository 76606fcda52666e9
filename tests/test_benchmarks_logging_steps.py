"""Logging training scalars only on the steps something reads them (step_logging.py, issue 22) trains the same
networks, writes the same values at the same steps, shows the same values in the progress lines and leaves the
same final values as logging them on every step did."""
import functools

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger

from divlab.callbacks.progress import LogLinesProgress
from divlab.lightning_modules import autoregressive, ddpm, gan, vae
from divlab.lightning_modules.networks.gpt import GPT
from divlab.lightning_modules.networks.mlp import MLP
from divlab.lightning_modules.networks.time_mlp import TimeMLP

ADAM = functools.partial(torch.optim.Adam, lr=1e-3)
SMALL_MLP = functools.partial(MLP, hidden=16)
FAMILIES = {
    "gan": (gan, lambda: gan.GAN((2,), SMALL_MLP, SMALL_MLP, ADAM, ADAM, noise_dim=4)),
    "vae": (vae, lambda: vae.VAE((2,), SMALL_MLP, SMALL_MLP, ADAM, latent_dim=2, likelihood="gaussian")),
    "ddpm": (ddpm, lambda: ddpm.DDPM((2,), functools.partial(TimeMLP, hidden=16, depth=1, time_dim=8), ADAM, T=50)),
    "ar": (autoregressive, lambda: autoregressive.AutoregressiveModel(
        (8,), functools.partial(GPT, n_layer=1, n_head=2, n_embd=16), ADAM, vocab_size=5)),
}


def batches(family: str) -> list[torch.Tensor]:
    if family == "ar":  # token ids of 16 sequences of 8
        return [torch.randint(0, 5, (16, 8)) for _ in range(N_BATCHES)]
    return [torch.randn(16, 2) * 0.1 + 1.0 for _ in range(N_BATCHES)]
N_BATCHES, LOG_EVERY, PROGRESS_EVERY = 45, 20, 7


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


class ProgressLineValues(L.Callback):
    """The training scalars a progress line shows, on the batches it is printed."""

    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % PROGRESS_EVERY == 0:
            self.rows.append((batch_idx, {k: float(v) for k, v in trainer.callback_metrics.items()}))


def train(family: str) -> tuple[list, list, dict, list[torch.Tensor]]:
    _, make_module = FAMILIES[family]
    L.seed_everything(0)
    module = make_module()
    data = batches(family)
    logger, progress_lines = RecordingLogger(), ProgressLineValues()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=logger, log_every_n_steps=LOG_EVERY, enable_checkpointing=False,
        callbacks=[LogLinesProgress(PROGRESS_EVERY), progress_lines], enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    final = {name: float(value) for name, value in trainer.logged_metrics.items()}
    return logger.rows, progress_lines.rows, final, [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("family", FAMILIES)
def test_logging_on_logging_steps_writes_what_logging_every_step_wrote(family, monkeypatch):
    rows, progress, final, weights = train(family)
    with monkeypatch.context() as patch:
        patch.setattr(FAMILIES[family][0], "is_logging_step", lambda module, batch_idx: True)
        every_step_rows, every_step_progress, every_step_final, every_step_weights = train(family)

    assert [step for step, _ in rows] == [LOG_EVERY - 1, 2 * LOG_EVERY - 1]
    assert all(any(name.startswith("train/") for name in metrics) for _, metrics in rows)
    assert rows == every_step_rows
    assert len(progress) == N_BATCHES // PROGRESS_EVERY and progress == every_step_progress
    assert any(name.startswith("train/") for name in final) and final == every_step_final
    assert all(torch.equal(a, b) for a, b in zip(weights, every_step_weights))
