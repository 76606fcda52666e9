"""RLHF with PPO: maximise E_{y∼π(·|x)}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)) by policy gradients.

Each training step is one PPO iteration on a batch of prompts x (Ziegler et al. 2019; Stiennon
et al. 2020): roll out y ∼ π(·|x); score r(x, y) with a reward model (`reward_model.ppo_reward_model`:
fitted on this run's pairs at the start of fit, or read from a checkpoint) normalised on reference
completions, or with the task's true reward (`reward_model: null`, the DPO paper's "PPO-GT" oracle);
per-token rewards r_t = −β(log π − log π_ref) + r(x, y)·1[t last] (`objectives.kl_penalized_rewards`); a value head
over the policy's backbone gives V_t and GAE(γ, λ) the advantages; then `ppo_epochs` passes over the
rollouts in minibatches minimise the clipped surrogate plus `vf_coef` × the clipped value loss. β is fixed
or adapted towards a target KL (`kl_controller`). Manual optimisation (`manual_backward`), so precision
plugins and DDP apply. The checkpoint keeps r_φ, the KL controller's state and the score's normalisation,
so a resumed run continues with the same r_φ and β instead of refitting.

Logged: train/score (the score PPO maximises), train/kl_to_ref (on the rollouts), train/kl_coef, the two
losses, train/clip_fraction, train/approx_kl. The true reward and KL of fresh samples, and the reward model's
held-out pair accuracy, are measured by the `alignment` callback (`callbacks/alignment_metrics.py`).
"""
import dataclasses
import math
from collections.abc import Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from divlab.eval_mode import eval_mode
from divlab.lightning_modules import alignment_objectives as objectives
from divlab.lightning_modules.bag_of_words import BagOfWordsRewardModel
from divlab.lightning_modules.contracts import AlignmentModule, FamilyModule, GenerativeModule
from divlab.lightning_modules.likelihoods import token_log_likelihoods
from divlab.lightning_modules.networks.scalar_head import ScalarHead
from divlab.lightning_modules.optim import make_optimizer
from divlab.lightning_modules.reference_policy import load_reference_policy, trainable_copy
from divlab.lightning_modules.reward_model import FIT, FITTED_ON_THE_RUN, READOUTS, fit_reward_model, ppo_reward_model
from divlab.lightning_modules.sequence import decode_completions, read_sequence, rollout
from divlab.validation import check_choice, check_positive, optimizer_lr

KL_CONTROLLERS = {"fixed": objectives.FixedKLController, "adaptive": objectives.AdaptiveKLController}
REWARD_NORMALIZATIONS = ("reference", "none")
PPO_STATS = ("train/policy_loss", "train/value_loss", "train/clip_fraction", "train/approx_kl")


class PPO(L.LightningModule, FamilyModule, GenerativeModule, AlignmentModule):
    family = "align"
    validation_metrics = ()  # the alignment callback measures the policy
    draws_training_noise = True

    def __init__(self, data_shape, policy: dict, optimizer,
                 kl_coef: float = 0.1, kl_controller: str = "fixed", kl_target: float = 6.0, kl_horizon: int = 10_000,
                 reward_model: str | None = FIT, true_reward: Callable[[Sequence[str]], torch.Tensor] | None = None,
                 reward_model_epochs: int = 3, reward_model_lr: float = 3.0e-4, reward_model_readout: str = "last",
                 reward_model_words: int = 3000,
                 completion_length: int = 32, ppo_epochs: int = 4, minibatch_size: int = 16, clip_eps: float = 0.2,
                 value_clip_eps: float = 0.2, vf_coef: float = 0.1, gamma: float = 1.0, lam: float = 0.95,
                 max_grad_norm: float = 1.0, reward_normalization: str = "reference",
                 reward_normalization_samples: int = 256):
        """`policy`: the reference policy spec (`load_reference_policy`); `reward_model` and its `reward_model_*`
        settings: `reward_model.ppo_reward_model`, or null to score with `true_reward`, the task's r*(x, y) of
        completions' texts (a partial from the config); `reward_normalization`: `normalizes_rewards`."""
        super().__init__()
        check_ppo_settings(locals())
        self.save_hyperparameters(ignore=["optimizer", "true_reward"])
        # RLHF proper scores with a reward model; the true-reward oracle is its own curve on the frontier.
        self.divergence = "ppo" if reward_model is not None else "ppo_gt"
        self.hparams.update(family=self.family, divergence=self.divergence, lr=optimizer_lr(optimizer))
        self.automatic_optimization = False
        self.reference_policy = load_reference_policy(**policy)  # a tuple: its model is no submodule, never trained
        self.policy = trainable_copy(self.reference_policy)
        self.value_head = ScalarHead(self.reference.hparams.vocab_size)
        self.reward_model = ppo_reward_model(reward_model, data_shape, policy, self.reference_policy.text.decode,
                                             reward_model_lr, reward_model_readout, reward_model_words)
        self.true_reward = true_reward
        self.reward_model_fitted = not self.reward_model_is_fitted_here
        # (μ, σ) of r_φ on reference completions; NaN until measured (a buffer: saved in the checkpoint)
        self.register_buffer("reward_stats", torch.full((2,), math.nan))
        self.kl_control = (objectives.FixedKLController(kl_coef) if kl_controller == "fixed"
                           else objectives.AdaptiveKLController(kl_coef, kl_target, kl_horizon))
        self.optimizer = optimizer

    def training_step(self, batch: dict, batch_idx: int) -> None:
        prompts = equal_length_prompts(batch)
        with torch.no_grad():
            tokens, mask = rollout(self.policy, prompts, self.hparams.completion_length)
            logp_old, values_old = self.logprobs_and_values(tokens)
            logp_ref = self.reference.token_log_likelihoods(tokens)
            score = self.score(tokens, mask, prompts.shape[1])
            rewards = objectives.kl_penalized_rewards(logp_old, logp_ref, score, self.kl_control.value, mask)
            advantages, returns = objectives.gae(rewards, values_old, mask, self.hparams.gamma, self.hparams.lam)
            advantages = objectives.masked_whiten(advantages, mask)
        stats = [self.ppo_update(tokens[i], mask[i], logp_old[i], values_old[i], advantages[i], returns[i])
                 for _ in range(self.hparams.ppo_epochs)
                 for i in torch.randperm(len(tokens), device=tokens.device).split(self.hparams.minibatch_size)]
        kl = objectives.sequence_kl_estimate(logp_old, logp_ref, mask).mean()
        self.log_dict({"train/score": score.mean(), "train/kl_to_ref": kl, "train/kl_coef": self.kl_control.value,
                       "train/value_mean": objectives.masked_mean(values_old, mask),
                       **{key: torch.stack(values).mean() for key, values in zip(PPO_STATS, zip(*stats))}},
                      prog_bar=False, batch_size=len(tokens))
        self.kl_control.update(kl.item(), len(tokens))

    def ppo_update(self, tokens, mask, logp_old, values_old, advantages, returns) -> tuple[torch.Tensor, ...]:
        """One minibatch step of the clipped surrogate + vf_coef × the clipped value loss."""
        logp, values = self.logprobs_and_values(tokens)
        policy = objectives.ppo_policy_loss(logp, logp_old, advantages, self.hparams.clip_eps, mask)
        value_loss = objectives.ppo_value_loss(values, values_old, returns, self.hparams.value_clip_eps, mask)
        optimizer = self.policy_optimizer()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(policy.loss + self.hparams.vf_coef * value_loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        optimizer.step()
        return policy.loss.detach(), value_loss.detach(), policy.clip_fraction, policy.approx_kl

    def logprobs_and_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(tokens_t | tokens_<t) and V_t (the value of the state before token t), both [B, T], one forward."""
        logits = read_sequence(self.policy, tokens)[:, :-1]
        return token_log_likelihoods(logits, tokens), self.value_head(logits)

    @torch.no_grad()
    def score(self, tokens: torch.Tensor, mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
        """r(x, y) per sequence [B]: the reward model's, or the true reward of the decoded completions."""
        if self.reward_model is not None:
            with eval_mode(self.reward_model):
                score = self.reward_model.rewards(tokens, mask)
            if self.normalizes_rewards:
                mean, std = self.reward_stats
                score = (score - mean) / std
            return score
        completions = decode_completions(self.reference_policy.text.decode, tokens, prompt_length)
        return self.true_reward(completions).to(self.device)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Nothing of PPO's own to validate on the pairs; the `alignment` callback measures the policy (true
        reward, KL) and the reward model (held-out pair accuracy) at every validation."""

    def sample(self, n: int) -> torch.Tensor:
        return self.policy.sample(n)

    def configure_optimizers(self):
        policy = make_optimizer(self.optimizer, [*self.policy.parameters(), *self.value_head.parameters()], self)
        return [policy, self.reward_model.configure_optimizers()] if self.hparams.reward_model == FIT else policy

    def policy_optimizer(self):
        """The optimiser of π and the value head (the reward model, when fitted here, has the second)."""
        optimizers = self.optimizers()
        return optimizers[0] if isinstance(optimizers, list) else optimizers

    # ---- before the first iteration: π_ref on the device, r_φ fitted and normalised ------------------------------

    @property
    def reference(self):
        return self.reference_policy.model

    @property
    def reward_model_is_fitted_here(self) -> bool:
        """Whether r_φ is fitted on this run's pairs at the start of fit (`fit`, `bag_of_words`), not loaded."""
        return self.hparams.reward_model in FITTED_ON_THE_RUN

    @property
    def normalizes_rewards(self) -> bool:
        """`reward_normalization=reference` scores PPO with (r_φ − μ)/σ, μ and σ the reward model's mean and standard
        deviation on `reward_normalization_samples` completions of the reference policy, measured once before PPO
        starts and kept in the checkpoint (Ziegler et al. 2019, §2.1). A Bradley–Terry model is defined only up to an
        offset, and a summed readout sits far from 0 (−66 on the controlled task), so unnormalised its offset becomes
        the value head's target and the value loss, through the shared backbone, swamps the policy gradient. `none`:
        r_φ as it is. The true reward (PPO-GT) is never normalised."""
        return self.reward_model is not None and self.hparams.reward_normalization == "reference"

    def on_fit_start(self) -> None:
        self.reference.to(self.device)
        if not self.reward_model_fitted:  # the full training split on every rank: the same r_φ everywhere
            with torch.random.fork_rng():
                torch.manual_seed(0)
                loader = self.trainer.datamodule.train_dataloader()
                if isinstance(self.reward_model, BagOfWordsRewardModel):
                    self.reward_model.fit(loader)
                else:
                    fit_reward_model(self, self.reward_model, self.optimizers()[1], loader,
                                     self.hparams.reward_model_epochs)
            self.reward_model_fitted = True
        if self.normalizes_rewards and self.reward_stats.isnan().any():  # same prompts and seed on every rank
            with torch.random.fork_rng():
                torch.manual_seed(0)
                self.reward_stats = self.reference_reward_stats(self.trainer.datamodule.train_dataloader(),
                                                                self.hparams.reward_normalization_samples)
            mean, std = self.reward_stats.tolist()
            rank_zero_info(f"reward model on {self.hparams.reward_normalization_samples} reference completions: mean "
                           f"{mean:.4g}, std {std:.4g}; PPO is scored with (r - mean) / std")

    @torch.no_grad()
    def reference_reward_stats(self, loader, n: int) -> torch.Tensor:
        """(mean, std) of r_φ on completions the reference policy samples for the first prompts of `loader`."""
        scores, count = [], 0
        for batch in loader:
            prompts = equal_length_prompts(batch).to(self.device)[: n - count]
            tokens, mask = rollout(self.reference, prompts, self.hparams.completion_length)
            with eval_mode(self.reward_model):
                scores.append(self.reward_model.rewards(tokens, mask).float())
            count += len(prompts)
            if count >= n:
                break
        scores = torch.cat(scores)
        if len(scores) < 2:
            raise ValueError("model.reward_normalization=reference needs at least 2 training prompts, "
                             f"got {len(scores)}")
        return torch.stack([scores.mean(), scores.std().clamp_min(1e-8)])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ppo"] = {"reward_model_fitted": self.reward_model_fitted,
                             "kl_control": dataclasses.asdict(self.kl_control)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("ppo") or {}
        self.reward_model_fitted = state.get("reward_model_fitted", self.reward_model_fitted)
        for key, value in (state.get("kl_control") or {}).items():
            setattr(self.kl_control, key, value)


def check_ppo_settings(settings: dict) -> None:
    """Refuse PPO's bad settings (its constructor's arguments) by name, before anything is built."""
    check_choice("model.kl_controller", settings["kl_controller"], KL_CONTROLLERS)
    check_choice("model.reward_model_readout", settings["reward_model_readout"], READOUTS)
    check_choice("model.reward_normalization", settings["reward_normalization"], REWARD_NORMALIZATIONS)
    for key in ("reward_model_epochs", "reward_model_lr", "reward_model_words", "completion_length", "ppo_epochs",
                "minibatch_size", "clip_eps", "value_clip_eps", "max_grad_norm", "reward_normalization_samples"):
        check_positive(f"model.{key}", settings[key])
    for key in ("kl_coef", "vf_coef", "gamma", "lam"):
        check_positive(f"model.{key}", settings[key], allow_zero=True)
    if settings["reward_model"] is None and settings["true_reward"] is None:
        raise ValueError("model.reward_model=null scores PPO with the true reward, and model.true_reward is null; "
                         "give the task's (configs/model/ppo.yaml: the controlled task's sentiment_reward)")


def equal_length_prompts(batch: dict) -> torch.Tensor:
    """The batch's prompts [B, P]; rollouts start all prompts at once, so they must have one length."""
    if not batch["prompt_mask"].bool().all():
        lengths = sorted(set(batch["prompt_mask"].sum(-1).tolist()))
        raise ValueError(f"PPO rollouts need prompts of one token length per batch, got lengths {lengths}; "
                         "use the controlled task's fixed-length prompts or data.batch_size=1")
    return batch["prompt_ids"]
