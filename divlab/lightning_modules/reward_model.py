"""A reward model r_φ(x, y) fitted to preference pairs by the Bradley–Terry likelihood.

r_φ is a scalar head over a copy of the reference policy's backbone, read after the last
completion token (`readout: last`, Stiennon et al. 2020; Ouyang et al. 2022) or added up over the
completion's tokens (`readout: sum`: a score per token, summed — the shape of a lexicon scorer such as
the controlled task's VADER, a normalised sum of word valences); training minimises
−log σ(r_φ(x, y_w) − r_φ(x, y_l)) (`alignment_objectives.bradley_terry_loss`). PPO's reward models
are made below (`ppo_reward_model`, `fit_reward_model`).
"""
import contextlib
from functools import partial
from pathlib import Path

import lightning as L
import torch

from divlab.checkpoints import check_readable
from divlab.lightning_modules.alignment_objectives import bradley_terry_loss, last_token_index, pair_accuracy
from divlab.lightning_modules.bag_of_words import BagOfWordsRewardModel
from divlab.lightning_modules.contracts import FamilyModule
from divlab.lightning_modules.networks.scalar_head import ScalarHead
from divlab.lightning_modules.optim import make_optimizer, with_scheduler
from divlab.lightning_modules.reference_policy import freeze, load_reference_policy, trainable_copy
from divlab.lightning_modules.sequence import read_sequence
from divlab.validation import check_choice, optimizer_lr

READOUTS = ("last", "sum")
FIT, BAG_OF_WORDS = "fit", "bag_of_words"  # PPO's reward models fitted on its run's pairs (`ppo_reward_model`)
FITTED_ON_THE_RUN = (FIT, BAG_OF_WORDS)


class RewardModel(L.LightningModule, FamilyModule):
    family = "align"
    divergence = "bradley_terry"
    validation_metrics = ("loss", "reward_model_accuracy")
    draws_training_noise = False

    def __init__(self, data_shape, policy: dict, optimizer, readout: str = "sum", scheduler=None,
                 init_from: str | None = None):
        """`policy`: the reference policy spec (`load_reference_policy`) whose backbone r_φ starts from;
        `readout`: last | sum (`read_reward`); `scheduler`: a partial lr scheduler stepped every step, or
        None for a constant rate; `init_from`: a reward model checkpoint whose weights r_φ starts from (a fresh
        optimiser and schedule: a second stage, e.g. one epoch of cosine decay to zero after a constant rate)."""
        super().__init__()
        check_choice("model.readout", readout, READOUTS)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams.update(family=self.family, divergence=self.divergence, lr=optimizer_lr(optimizer))
        reference = load_reference_policy(**policy)
        self.backbone = trainable_copy(reference)
        self.head = ScalarHead(reference.model.hparams.vocab_size)
        self.optimizer, self.scheduler = optimizer, scheduler
        if init_from is not None:
            self.load_weights(init_from)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.preference_step(batch, "train")

    def pair_rewards(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_φ(x, y_w), r_φ(x, y_l)) [B] each, in one forward pass."""
        ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])
        mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
        return self.rewards(ids, mask).chunk(2)

    def preference_step(self, batch: dict, split: str) -> torch.Tensor:
        """The Bradley–Terry loss; logs it and the pair accuracy (`val/reward_model_accuracy` held out)."""
        chosen, rejected = self.pair_rewards(batch)
        loss = bradley_terry_loss(chosen, rejected)
        accuracy_key = "val/reward_model_accuracy" if split == "val" else f"{split}/accuracy"
        self.log_dict({f"{split}/loss": loss.detach(), accuracy_key: pair_accuracy(chosen, rejected)},
                      prog_bar=True, sync_dist=split != "train", batch_size=len(chosen))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.preference_step(batch, "val")

    def configure_optimizers(self):
        return with_scheduler(make_optimizer(self.optimizer, self.parameters(), self), self.scheduler)

    def rewards(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """r_φ(x, y) per sequence [B], read from the backbone's outputs as `readout` says."""
        return read_reward(self.head(read_sequence(self.backbone, tokens)), mask, self.hparams.readout)

    def load_weights(self, ckpt_path: str) -> None:
        """r_φ's weights from a reward model checkpoint of the same readout and backbone shape (strict)."""
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.init_from={ckpt_path!r} does not exist; pass a checkpoint of an "
                                    "experiment=align_reward_model run, or null to start from the policy")
        checkpoint = check_readable(path)
        readout = checkpoint.get("hyper_parameters", {}).get("readout", self.hparams.readout)
        if readout != self.hparams.readout:
            raise ValueError(f"model.init_from={ckpt_path!r} was trained with readout={readout!r}, this run has "
                             f"model.readout={self.hparams.readout!r}; set model.readout={readout}")
        self.load_state_dict(checkpoint["state_dict"])


def read_reward(position_scores: torch.Tensor, mask: torch.Tensor, readout: str = "last") -> torch.Tensor:
    """r per sequence [B] from a scalar per output position [B, T + 1] of `read_sequence` on tokens [B, T]
    (position i has read BOS and tokens[:, :i]) and the completion mask [B, T]:

    - `last`: the score at the position that has read the last completion token;
    - `sum`:  Σ_t mask_t · score at position t + 1, each completion token's score once it is read.
    """
    if readout == "last":
        last = last_token_index(mask) + 1
        return position_scores[torch.arange(len(mask), device=mask.device), last]
    check_choice("model.readout", readout, READOUTS)
    return (position_scores[:, 1:] * mask).sum(-1)


def load_reward_model(ckpt_path: str, other_choices: str = "not") -> RewardModel:
    """A frozen reward model from a `model=reward_model` run's checkpoint (PPO's `model.reward_model=<ckpt>`)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.reward_model={ckpt_path!r} is {other_choices} an existing checkpoint; train "
                                "one with experiment=align_reward_model, or leave it null for the true reward")
    return freeze(RewardModel.load_from_checkpoint(path, map_location="cpu", optimizer=None, init_from=None,
                                                   weights_only=True))


def ppo_reward_model(choice: str | None, data_shape, policy: dict, decode, lr: float, readout: str, words: int):
    """PPO's r_φ for `model.reward_model=choice`, a frozen submodule (saved in PPO's checkpoint, outside DDP's
    gradient sync): `fit`, a RewardModel over π_ref's backbone (`policy`) fitted on the run's training pairs by
    `fit_reward_model` (AdamW at `lr`, read out as `readout` says); `bag_of_words`, logistic regression on the
    pairs' counts of their `words` most frequent words (`bag_of_words.py`, texts by `decode`); a checkpoint of a
    `model=reward_model` run; or None (PPO scores with the true reward)."""
    if choice == FIT:
        return freeze(RewardModel(data_shape, policy, partial(torch.optim.AdamW, lr=lr), readout=readout))
    if choice == BAG_OF_WORDS:
        return BagOfWordsRewardModel(decode, words)
    return None if choice is None else load_reward_model(choice, f"neither {FIT}, {BAG_OF_WORDS} nor")


def fit_reward_model(module: L.LightningModule, reward_model: RewardModel, optimizer, loader, epochs: int) -> None:
    """`epochs` of the Bradley–Terry loss over `loader` for `reward_model`, a submodule of `module` (PPO's r_φ
    with `model.reward_model=fit`) with its own `optimizer`, through `module`'s Trainer: its precision plugin's
    autocast and `manual_backward`; gradients stay local (every rank fits the same r_φ on the same pairs)."""
    precision, strategy = module.trainer.precision_plugin, module.trainer.strategy
    reward_model.train().requires_grad_(True)
    for _ in range(epochs):
        for batch in loader:
            batch = {key: value.to(module.device) for key, value in batch.items()}
            with precision.forward_context():
                loss = bradley_terry_loss(*reward_model.pair_rewards(batch))
            optimizer.zero_grad(set_to_none=True)
            with getattr(strategy, "block_backward_sync", contextlib.nullcontext)():
                module.manual_backward(loss)
            optimizer.step()
    freeze(reward_model)
