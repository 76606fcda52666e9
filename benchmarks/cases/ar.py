"""char_gpt's model and batch (4 layers, 4 heads, 128 dims, block 64, batch 12) as a benchmark case."""
import functools

import torch

from divlab.datamodules.text import TextDataModule
from divlab.lightning_modules.autoregressive import AutoregressiveModel
from divlab.lightning_modules.networks.gpt import GPT


def plain_step(module: AutoregressiveModel, optimizers, batch: torch.Tensor) -> None:
    (optimizer,) = optimizers
    loss = -module.token_log_likelihoods(batch).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def make_case() -> dict:
    data = TextDataModule(block_size=64, batch_size=12)
    module = AutoregressiveModel(
        data.sample_shape,
        functools.partial(GPT, n_layer=4, n_head=4, n_embd=128),
        functools.partial(torch.optim.AdamW, lr=1e-3),
        vocab_size=data.vocab_size,
    )
    return {"name": "char_gpt_shakespeare (batch 12x64)", "module": module,
            "batch": next(iter(data.train_dataloader())), "plain_step": plain_step, "datamodule": data}
