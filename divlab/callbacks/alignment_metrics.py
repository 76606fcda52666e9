"""What the alignment family is measured by: the true reward and KL(π‖π_ref) of fresh samples.

At every validation, on fixed prompts from the reference policy's validation text: `val/true_reward`
(the controlled task's true reward of fresh completions of π), `val/kl_to_ref` (Σ_t log π/π_ref on
those completions: KL(π‖π_ref) per sequence, in nats), `val/ref_true_reward` (π_ref's own reward on the
same prompts: the frontier's baseline) and a text sample table; and, for a module scoring with a
learned reward model, that model's held-out pair accuracy `val/reward_model_accuracy`.

It reads only the alignment family's contract: `policy` (the `ar` model being trained),
`reference_policy` (π_ref with its tokenizer and corpus, `lightning_modules/reference_policy.py`) and, where
there is one, `reward_model` (a module with `pair_rewards(batch)`, or None). Modules without `policy` and
`reference_policy` (the reward model alone) are skipped. The true reward is the task's, given by the config
(`callbacks.alignment.true_reward`: the controlled task's `sentiment_reward`).
"""
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from divlab.callbacks.evaluation_rng import seeded_stream
from divlab.callbacks.media import log_text_samples
from divlab.datamodules.prompts import token_prefixes
from divlab.lightning_modules.alignment_objectives import pair_accuracy, sequence_kl_estimate
from divlab.lightning_modules.sequence import decode_completions, rollout
from divlab.validation import check_positive


class PolicyEvaluation(NamedTuple):
    true_reward: float  # mean r*(x, y) over fresh samples y ∼ π
    kl_to_ref: float  # mean Σ_t log π/π_ref over the same samples: KL(π ‖ π_ref) per sequence, in nats
    texts: list[str]  # prompt + completion, as text


TrueReward = Callable[[Sequence[str]], Tensor]  # completions' texts → r*(x, y) [N]


def eval_prompts(reference, n: int, length: int, seed: int = 0) -> Tensor:
    """`n` fixed prompts of `length` tokens: prefixes at word starts of the policy's validation text."""
    text = reference.text
    return token_prefixes(text, text.decode(text.tokens["val"][:200_000]), n, length, seed)


@torch.no_grad()
def seeded_rollout(policy, prompts: Tensor, max_new_tokens: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Completions of `prompts` sampled from `policy` with a fixed seed (common random numbers: evaluations of two
    policies, or of one policy at two steps, differ by the policy, not by sampling noise), without disturbing the
    global random state: tokens [B, P + L] and the completion mask."""
    prompts = prompts.to(policy.device)
    with seeded_stream(seed, policy.device):
        return rollout(policy, prompts, max_new_tokens)


@torch.no_grad()
def evaluate_policy(policy, reference, prompts: Tensor, max_new_tokens: int, decode, true_reward: TrueReward,
                    seed: int = 0) -> PolicyEvaluation:
    """True reward and KL(π‖π_ref) of fresh samples of `policy` on fixed prompts (`seeded_rollout`)."""
    tokens, mask = seeded_rollout(policy, prompts, max_new_tokens, seed)
    kl = sequence_kl_estimate(policy.token_log_likelihoods(tokens), reference.token_log_likelihoods(tokens), mask)
    completions = decode_completions(decode, tokens, prompts.shape[1])
    texts = [decode(row) for row in tokens.cpu()]
    return PolicyEvaluation(true_reward(completions).mean().item(), kl.mean().item(), texts)


@torch.no_grad()
def true_reward_of(policy, prompts: Tensor, max_new_tokens: int, decode, true_reward: TrueReward,
                   seed: int = 0) -> float:
    """The mean true reward of `seeded_rollout`'s completions alone (for π_ref, whose KL to itself is 0)."""
    tokens, _ = seeded_rollout(policy, prompts, max_new_tokens, seed)
    return true_reward(decode_completions(decode, tokens, prompts.shape[1])).mean().item()


class AlignmentMetrics(L.Callback):
    """`val/true_reward`, `val/kl_to_ref`, `val/ref_true_reward`, text samples and `val/reward_model_accuracy`."""

    name = "alignment"  # its key under callbacks: in the configs

    def __init__(self, true_reward: TrueReward, n_prompts: int = 128, prompt_length: int = 8,
                 completion_length: int = 32, n_texts: int = 8, seed: int = 0):
        """`true_reward`: the task's r*(x, y) of completions' texts (a partial: `_partial_: true` in the config)."""
        self.true_reward = true_reward
        for key in ("n_prompts", "prompt_length", "completion_length"):
            check_positive(f"callbacks.alignment.{key}", locals()[key])
        self.n_prompts, self.prompt_length, self.completion_length = n_prompts, prompt_length, completion_length
        self.n_texts, self.seed = n_texts, seed
        self.prompts = None
        self._reference_reward = None

    # what it logs as val/<name> (checked against checkpoint monitors)
    metric_names = ("true_reward", "kl_to_ref", "ref_true_reward", "reward_model_accuracy")

    def logs_metric(self, name: str) -> bool:
        return name in self.metric_names

    @staticmethod
    def applies_to(pl_module) -> bool:
        return hasattr(pl_module, "policy") and hasattr(pl_module, "reference_policy")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        reward_model = getattr(pl_module, "reward_model", None)
        if self.applies_to(pl_module) and reward_model is not None:
            accuracy = pair_accuracy(*reward_model.pair_rewards(batch))
            pl_module.log("val/reward_model_accuracy", accuracy, sync_dist=True, batch_size=len(batch["index"]))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.applies_to(pl_module) or trainer.sanity_checking:  # Lightning keeps no sanity-check metric
            return
        reference = pl_module.reference_policy
        if self.prompts is None:
            self.prompts = eval_prompts(reference, self.n_prompts, self.prompt_length, self.seed)
        result = self.evaluate(pl_module.policy, reference)
        if self._reference_reward is None:
            self._reference_reward = true_reward_of(reference.model.to(pl_module.device), self.prompts,
                                                    self.completion_length, reference.text.decode, self.true_reward,
                                                    self.seed)
        pl_module.log_dict({"val/true_reward": result.true_reward, "val/kl_to_ref": result.kl_to_ref,
                            "val/ref_true_reward": self._reference_reward}, prog_bar=True, sync_dist=True)
        write_text_samples(trainer, "val/samples", result.texts[: self.n_texts])

    def evaluate(self, policy, reference) -> PolicyEvaluation:
        return evaluate_policy(policy, reference.model, self.prompts, self.completion_length,
                               reference.text.decode, self.true_reward, self.seed)


@rank_zero_only
def write_text_samples(trainer, key: str, texts: list[str]) -> Path:
    """`<output_dir>/samples/<key>_step<N>.txt` always, and a W&B table when W&B logs the run."""
    folder = Path(trainer.default_root_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key.replace('/', '_')}_step{trainer.global_step:07d}.txt"
    path.write_text("\n".join(repr(text) for text in texts) + "\n", encoding="utf-8")
    log_text_samples(trainer, key, texts)
    return path
