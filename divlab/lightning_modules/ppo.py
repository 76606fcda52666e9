"""RLHF with PPO: maximise E_{y∼π(·|x)}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)) by policy gradients.

Each training step is one PPO iteration on a batch of prompts x (Ziegler et al. 2019; Stiennon
et al. 2020): roll out y ∼ π(·|x); score r(x, y) with a Bradley–Terry reward model — fitted on this
run's preference pairs before training (`reward_model: fit`) or read from a checkpoint — or, with
`reward_model: null`, with the true reward (the "PPO-GT" oracle of the DPO paper); per-token rewards
r_t = −β(log π − log π_ref) + r(x, y)·1[t last] (`kl_penalized_rewards`); a value head over the
policy's backbone gives V_t and GAE(γ, λ) the advantages; then `ppo_epochs` passes over the
rollouts in minibatches minimise the clipped surrogate plus `vf_coef` × the clipped value loss.
β is fixed or adapted towards a target KL (`kl_controller`). Manual optimisation
(`manual_backward`), so precision plugins and DDP apply.

Logged: train/score, train/kl_to_ref (on the rollouts), train/kl_coef, the two losses,
train/clip_fraction, train/approx_kl; the reward model's held-out pair accuracy
(`val/reward_model_accuracy`) when there is one; at every validation the true reward and KL of fresh
samples, the reference's true reward and a text sample table (`policy.py`).
"""
from functools import partial
from pathlib import Path

import lightning as L
import torch

from divlab.alignment.policy import (
    PolicyEvaluator,
    ScalarHead,
    decode_completions,
    freeze,
    load_reference_policy,
    read_sequence,
    rollout,
    trainable_copy,
)
from divlab.alignment.true_reward import sentiment_reward
from divlab.lightning_modules.alignment_objectives import (
    AdaptiveKLController,
    FixedKLController,
    gae,
    kl_penalized_rewards,
    masked_mean,
    masked_whiten,
    pair_accuracy,
    ppo_policy_loss,
    ppo_value_loss,
    sequence_kl_estimate,
)
from divlab.lightning_modules.likelihoods import token_log_likelihoods
from divlab.lightning_modules.reward_model import RewardModel, fit_reward_model
from divlab.lightning_modules.optim import make_optimizer
from divlab.validation import check_choice, check_positive, optimizer_lr

KL_CONTROLLERS = {"fixed": FixedKLController, "adaptive": AdaptiveKLController}


class PPO(L.LightningModule):
    family = "align"

    def __init__(
        self,
        data_shape,
        policy: dict,
        optimizer,
        kl_coef: float = 0.1,
        kl_controller: str = "fixed",
        kl_target: float = 6.0,
        kl_horizon: int = 10_000,
        reward_model: str | None = None,
        reward_model_epochs: int = 3,
        reward_model_lr: float = 3.0e-4,
        completion_length: int = 32,
        ppo_epochs: int = 4,
        minibatch_size: int = 16,
        clip_eps: float = 0.2,
        value_clip_eps: float = 0.2,
        vf_coef: float = 0.1,
        gamma: float = 1.0,
        lam: float = 0.95,
        max_grad_norm: float = 1.0,
        evaluation: dict | None = None,
    ):
        """`policy`: the reference policy spec (`load_reference_policy`); `reward_model`: `fit` (on the
        run's training pairs, `reward_model_epochs` epochs of AdamW at `reward_model_lr`, before PPO starts),
        a checkpoint of a `model=reward_model` run, or null for the true reward; `evaluation`: `PolicyEvaluator`."""
        super().__init__()
        check_choice("model.kl_controller", kl_controller, KL_CONTROLLERS)
        check_positive("model.kl_coef", kl_coef, allow_zero=True)
        for key in ("reward_model_epochs", "reward_model_lr", "completion_length", "ppo_epochs", "minibatch_size",
                    "clip_eps", "value_clip_eps", "max_grad_norm"):
            check_positive(f"model.{key}", locals()[key])
        for key in ("vf_coef", "gamma", "lam"):
            check_positive(f"model.{key}", locals()[key], allow_zero=True)
        self.save_hyperparameters(ignore=["optimizer"])
        # RLHF proper scores with a reward model; the true-reward oracle is its own curve on the frontier.
        self.divergence = "ppo" if reward_model is not None else "ppo_gt"
        self.hparams.update(family=self.family, divergence=self.divergence, lr=optimizer_lr(optimizer))
        self.automatic_optimization = False
        reference = load_reference_policy(**policy)
        self.policy = trainable_copy(reference)
        self.value_head = ScalarHead(reference.model.hparams.vocab_size)
        if reward_model == "fit":
            reward_model = RewardModel(data_shape, policy, partial(torch.optim.AdamW, lr=reward_model_lr))
        else:
            reward_model = load_reward_model(reward_model)
        self.frozen = (reference.model, reward_model)  # not submodules: not trained by PPO, not saved
        self.decode = reference.text.decode
        self.kl_control = (FixedKLController(kl_coef) if kl_controller == "fixed"
                           else AdaptiveKLController(kl_coef, kl_target, kl_horizon))
        self.evaluator = PolicyEvaluator(reference, **(evaluation or {}))
        self.optimizer = optimizer

    @property
    def reference(self):
        return self.frozen[0]

    def on_fit_start(self) -> None:
        for model in filter(None, self.frozen):
            model.to(self.device)
        if self.hparams.reward_model == "fit":  # the full training split on every rank: the same r_φ everywhere
            with torch.random.fork_rng():
                torch.manual_seed(0)
                fit_reward_model(self.frozen[1], self.trainer.datamodule.train_dataloader(),
                                 self.hparams.reward_model_epochs)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        prompts = equal_length_prompts(batch)
        with torch.no_grad():
            tokens, mask = rollout(self.policy, prompts, self.hparams.completion_length)
            logp_old, values_old = self.logprobs_and_values(tokens)
            logp_ref = self.reference.token_log_likelihoods(tokens)
            score = self.score(tokens, mask, prompts.shape[1])
            rewards = kl_penalized_rewards(logp_old, logp_ref, score, self.kl_control.value, mask)
            advantages, returns = gae(rewards, values_old, mask, self.hparams.gamma, self.hparams.lam)
            advantages = masked_whiten(advantages, mask)
        stats = [self.ppo_update(tokens[i], mask[i], logp_old[i], values_old[i], advantages[i], returns[i])
                 for _ in range(self.hparams.ppo_epochs)
                 for i in torch.randperm(len(tokens), device=tokens.device).split(self.hparams.minibatch_size)]
        kl = sequence_kl_estimate(logp_old, logp_ref, mask).mean()
        self.log_dict({"train/score": score.mean(), "train/kl_to_ref": kl, "train/kl_coef": self.kl_control.value,
                       "train/value_mean": masked_mean(values_old, mask),
                       **{key: torch.stack(values).mean() for key, values in zip(PPO_STATS, zip(*stats))}},
                      prog_bar=False, batch_size=len(tokens))
        self.kl_control.update(kl.item(), len(tokens))

    def ppo_update(self, tokens, mask, logp_old, values_old, advantages, returns) -> tuple[torch.Tensor, ...]:
        """One minibatch step of the clipped surrogate + vf_coef × the clipped value loss."""
        logp, values = self.logprobs_and_values(tokens)
        policy = ppo_policy_loss(logp, logp_old, advantages, self.hparams.clip_eps, mask)
        value_loss = ppo_value_loss(values, values_old, returns, self.hparams.value_clip_eps, mask)
        optimizer = self.optimizers()
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
        reward_model = self.frozen[1]
        if reward_model is not None:
            return reward_model.rewards(tokens, mask)
        return sentiment_reward(decode_completions(self.decode, tokens, prompt_length)).to(self.device)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """The reward model's held-out pair accuracy; the policy is measured at the epoch's end."""
        reward_model = self.frozen[1]
        if reward_model is not None:
            accuracy = pair_accuracy(*reward_model.pair_rewards(batch))
            self.log("val/reward_model_accuracy", accuracy, sync_dist=True, batch_size=len(batch["index"]))

    def on_validation_epoch_end(self) -> None:
        self.evaluator.log(self, self.policy)

    def sample(self, n: int) -> torch.Tensor:
        return self.policy.sample(n)

    def configure_optimizers(self):
        return make_optimizer(self.optimizer, [*self.policy.parameters(), *self.value_head.parameters()], self.device)


PPO_STATS = ("train/policy_loss", "train/value_loss", "train/clip_fraction", "train/approx_kl")


def equal_length_prompts(batch: dict) -> torch.Tensor:
    """The batch's prompts [B, P]; rollouts start all prompts at once, so they must have one length."""
    if not batch["prompt_mask"].bool().all():
        lengths = sorted(set(batch["prompt_mask"].sum(-1).tolist()))
        raise ValueError(f"PPO rollouts need prompts of one token length per batch, got lengths {lengths}; "
                         "use the controlled task's fixed-length prompts or data.batch_size=1")
    return batch["prompt_ids"]


def load_reward_model(ckpt_path: str | None) -> RewardModel | None:
    """A frozen reward model from a `model=reward_model` run's checkpoint, or None for the true reward."""
    if ckpt_path is None:
        return None
    if not Path(ckpt_path).expanduser().is_file():
        raise FileNotFoundError(f"model.reward_model={ckpt_path!r} does not exist; train one with "
                                "experiment=align_reward_model, or leave it null for the true reward")
    model = RewardModel.load_from_checkpoint(Path(ckpt_path).expanduser(), map_location="cpu", optimizer=None,
                                             weights_only=True)
    return freeze(model)
