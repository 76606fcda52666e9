"""Direct preference optimisation: fit preference pairs with the closed-form optimum of RLHF.

RLHF's optimum π*(y|x) ∝ π_ref(y|x)·exp(r(x, y)/β) turns a reward into a log-ratio,
r = β log π/π_ref + const, so the Bradley–Terry likelihood of the pairs becomes a loss on π alone
(Rafailov et al. 2023): L = −log σ(β·h), h = log π(y_w|x)/π_ref(y_w|x) − log π(y_l|x)/π_ref(y_l|x).
`model.loss=ipo|slic` swap −log σ for IPO's squared loss or SLiC-HF's hinge
(`alignment_objectives.dpo_loss`); the run record's `divergence` is the loss's name (dpo | ipo | slic).
`label_smoothing=ε` makes DPO conservative (labels trusted with probability 1 − ε, cDPO).
`length_normalize=true` divides each log-ratio by its completion's token count (TRL's IPO); the default,
false, uses summed log-probabilities (the DPO and IPO papers' sequence-level form). π starts at π_ref;
π_ref's log-probabilities are computed without gradients and cached by record (the pairs are fixed).
The true reward and KL(π‖π_ref) of fresh samples are measured by the `alignment` callback
(`callbacks/alignment_metrics.py`).
"""
import lightning as L
import torch

from divlab.lightning_modules import alignment_objectives as objectives
from divlab.lightning_modules.contracts import AlignmentModule, FamilyModule, GenerativeModule
from divlab.lightning_modules.optim import make_optimizer
from divlab.lightning_modules.reference_policy import load_reference_policy, trainable_copy
from divlab.lightning_modules.sequence import sequence_log_prob
from divlab.lightning_modules.step_logging import is_logging_step
from divlab.validation import check_positive, optimizer_lr


class DPO(L.LightningModule, FamilyModule, GenerativeModule, AlignmentModule):
    family = "align"
    validation_metrics = ("loss", "implicit_reward_chosen", "implicit_reward_rejected", "implicit_reward_margin",
                          "implicit_reward_accuracy")
    draws_training_noise = False
    reward_model = None  # its reward is implicit, β·log π/π_ref

    def __init__(self, data_shape, policy: dict, optimizer, loss: str = "dpo", beta: float = 0.1,
                 length_normalize: bool = False, label_smoothing: float = 0.0):
        """`policy`: the reference policy spec (`load_reference_policy`); `loss`: the preference loss,
        dpo | ipo | slic (`alignment_objectives.PREFERENCE_LOSSES`), which the run records as its divergence."""
        super().__init__()
        objectives.check_preference_loss(loss)
        check_positive("model.beta", beta)
        objectives.check_label_smoothing(label_smoothing, loss)
        self.save_hyperparameters(ignore=["optimizer"])
        self.divergence = loss  # the run record's `divergence` column names the preference loss
        self.hparams.update(family=self.family, divergence=self.divergence, lr=optimizer_lr(optimizer))
        self.reference_policy = load_reference_policy(**policy)  # a tuple: its model is no submodule, never trained
        self.policy = trainable_copy(self.reference_policy)
        self.optimizer = optimizer
        self._reference_cache: dict[int, torch.Tensor] = {}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.preference_step(batch, "train", log=is_logging_step(self, batch_idx))

    def preference_step(self, batch: dict, split: str, log: bool = True) -> torch.Tensor:
        """The loss; logs it and DPO's implicit rewards β·log π/π_ref of chosen and rejected completions, their
        margin and pair accuracy (`split`/...)."""
        chosen, rejected = self.policy_logprobs(batch).chunk(2)
        ref_chosen, ref_rejected = self.reference_logprobs(batch).unbind(-1)
        lengths = ((batch["chosen_mask"].sum(-1), batch["rejected_mask"].sum(-1)) if self.hparams.length_normalize
                   else (None, None))
        out = objectives.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.hparams.beta, self.hparams.loss,
                                  *lengths, label_smoothing=self.hparams.label_smoothing)
        if not log:  # training scalars go out on logging steps only (step_logging.py)
            return out.loss
        self.log(f"{split}/loss", out.loss.detach(), prog_bar=True, sync_dist=split != "train", batch_size=len(chosen))
        self.log_dict({
            f"{split}/implicit_reward_chosen": out.chosen_rewards.mean(),
            f"{split}/implicit_reward_rejected": out.rejected_rewards.mean(),
            f"{split}/implicit_reward_margin": (out.chosen_rewards - out.rejected_rewards).mean(),
            f"{split}/implicit_reward_accuracy": objectives.pair_accuracy(out.chosen_rewards, out.rejected_rewards),
        }, sync_dist=split != "train", batch_size=len(chosen))
        return out.loss

    def policy_logprobs(self, batch: dict, model=None) -> torch.Tensor:
        """[log π(y_w|x); log π(y_l|x)], [2B], chosen and rejected in one forward pass."""
        ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])
        mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
        return sequence_log_prob(model or self.policy, ids, mask)

    @torch.no_grad()
    def reference_logprobs(self, batch: dict) -> torch.Tensor:
        """[B, 2] log π_ref of (chosen, rejected), computed once per record and cached."""
        index = batch["index"].tolist()
        if any(i not in self._reference_cache for i in index):
            logps = torch.stack(self.policy_logprobs(batch, self.reference).chunk(2), -1)
            self._reference_cache.update(zip(index, logps.cpu()))
        return torch.stack([self._reference_cache[i] for i in index]).to(self.device)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.preference_step(batch, "val")

    def sample(self, n: int) -> torch.Tensor:
        return self.policy.sample(n)

    def configure_optimizers(self):
        return make_optimizer(self.optimizer, self.policy.parameters(), self)

    @property
    def reference(self):
        return self.reference_policy.model

    def on_fit_start(self) -> None:
        self.reference.to(self.device)
