"""Sequences of the `ar` family read the way alignment needs them: completions after a prompt.

The `ar` family reads [BOS, x_1, …, x_{T−1}] and predicts x_1 … x_T (`autoregressive.py`). Here:
its outputs over a whole sequence (where a scalar head reads), the log-probability of a completion
given its prompt, samples of completions (rollouts) and the mask that marks them.
"""
import torch
from torch import Tensor

from divlab.eval_mode import eval_mode
from divlab.lightning_modules.autoregressive import AutoregressiveModel


def read_sequence(model: AutoregressiveModel, tokens: Tensor) -> Tensor:
    """The backbone's outputs [B, T + 1, V] on [BOS, tokens]: position i has read BOS and tokens[:, :i].

    Positions 0..T−1 are the `ar` family's next-token logits for tokens 0..T−1; position T has read
    the whole sequence (where a reward head reads it). T + 1 must fit the backbone's context.
    """
    bos = torch.full_like(tokens[:, :1], model.bos)
    return model.backbone(torch.cat([bos, tokens], 1))


def sequence_log_prob(model: AutoregressiveModel, tokens: Tensor, mask: Tensor) -> Tensor:
    """log π(y | x) = Σ_t mask_t log π(tokens_t | tokens_<t) per sequence [B]; prompt and padding masked out.

    The `ar` family predicts every token, the first from BOS, so mask may be 1 anywhere after the prompt.
    """
    return (model.token_log_likelihoods(tokens) * mask).sum(-1)


def completion_mask(prompt_length: int, total_length: int, batch_size: int, device=None) -> Tensor:
    """[B, T] with 1 on the completion positions t ≥ prompt_length."""
    return (torch.arange(total_length, device=device) >= prompt_length).long().expand(batch_size, -1)


def rollout(model: AutoregressiveModel, prompts: Tensor, max_new_tokens: int) -> tuple[Tensor, Tensor]:
    """y ∼ π(·|x) at temperature 1 (so log-ratios on it estimate KL): tokens [B, P + L] and completion mask."""
    with eval_mode(model):
        tokens = model.sample(prompts.shape[0], prompt=prompts, max_new_tokens=max_new_tokens)
    return tokens, completion_mask(prompts.shape[1], tokens.shape[1], tokens.shape[0], tokens.device)


def decode_completions(decode, tokens: Tensor, prompt_length: int) -> list[str]:
    """The completions' text: each row of `tokens` after its first `prompt_length` tokens."""
    return [decode(row) for row in tokens[:, prompt_length:].cpu()]
