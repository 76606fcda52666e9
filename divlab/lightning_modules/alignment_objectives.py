"""Objectives of the alignment family: reward model, DPO and its variants, PPO for RLHF.

Pure tensor math, no trainer state. The policy π_θ and the frozen reference π_ref are
autoregressive models over token sequences. Every per-token tensor has shape [B, T] and is aligned
with the token tensor `tokens` [B, T]: position t holds the quantity of token t, e.g.
log π(tokens[:, t] | tokens[:, <t]). `mask` [B, T] is 1 on completion tokens (the response y) and
0 on the prompt x and on padding, so Σ_t mask·(·) is a sum over the response only.

RLHF maximises E_{y∼π}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)) (Ziegler et al. 2019; Stiennon et
al. 2020; Ouyang et al. 2022) with PPO (Schulman et al. 2017). DPO (Rafailov et al. 2023) uses
the closed-form optimum π* ∝ π_ref·exp(r/β) to fit preference pairs (x, y_w ≻ y_l) directly.
"""
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from divlab.validation import check_choice, check_positive


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Σ mask·x / Σ mask over all elements (a token-level mean)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x − mean)/std over masked elements, 0 elsewhere: the usual PPO advantage normalisation."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return torch.where(mask.bool(), (x - mean) * torch.rsqrt(var + eps), torch.zeros_like(x))


# ---- sequences -------------------------------------------------------------------------------


def sequence_kl_estimate(logp: Tensor, logp_ref: Tensor, mask: Tensor) -> Tensor:
    """Σ_t mask_t (log π(y_t | ·) − log π_ref(y_t | ·)) per sequence [B].

    On y ∼ π(·|x) this is an unbiased Monte Carlo estimate of KL(π(·|x) ‖ π_ref(·|x)) =
    E_{y∼π}[log π(y|x) − log π_ref(y|x)]; average it over samples for the reported KL.
    """
    return ((logp - logp_ref) * mask).sum(-1)


# ---- reward model ----------------------------------------------------------------------------


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """−E log σ(r(x, y_w) − r(x, y_l)): the Bradley–Terry negative log-likelihood of the pairs."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def pair_accuracy(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """Fraction of pairs ranked correctly, r(x, y_w) > r(x, y_l) (ties count as wrong)."""
    return (r_chosen > r_rejected).float().mean()


# ---- DPO and variants ------------------------------------------------------------------------


class DPOOutput(NamedTuple):
    loss: Tensor  # scalar, mean over pairs
    chosen_rewards: Tensor  # [B] implicit reward β·(log π(y_w|x) − log π_ref(y_w|x)), detached
    rejected_rewards: Tensor  # [B] the same for y_l


def _dpo(h: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    return -(1.0 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)


def _ipo(h: Tensor, beta: float) -> Tensor:
    return (h - 1.0 / (2.0 * beta)) ** 2


def _slic(h: Tensor, beta: float) -> Tensor:
    return F.relu(1.0 - beta * h)


# The preference losses by name (DPO's `model.loss`). SLiC-HF's is a hinge on the log-ratio margin; it is named
# `slic`, not `hinge`, because `divergence=hinge` is the GAN's hinge loss.
PREFERENCE_LOSSES: dict[str, Callable[[Tensor, float], Tensor]] = {"dpo": _dpo, "ipo": _ipo, "slic": _slic}
# Earlier names of the preference losses (they were the top-level `divergence`), refused with the one to use now.
RENAMED_PREFERENCE_LOSSES = {"hinge": "slic"}


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    loss: str = "dpo",
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> DPOOutput:
    """Preference loss on sequence log-probabilities [B], with the log-ratio margin

        h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)],

    or, given the completions' token counts |y_w|, |y_l| [B] (length normalisation, as TRL's and
    most public IPO implementations do), of per-token log-ratios:

        h = [log π(y_w|x) − log π_ref(y_w|x)]/|y_w| − [log π(y_l|x) − log π_ref(y_l|x)]/|y_l|,

    - `dpo`   −log σ(β·h)           (Rafailov et al. 2023, eq. 7); with `label_smoothing` ε > 0, the
              conservative DPO of labels flipped with probability ε (cDPO, Mitchell 2023; TRL's
              `label_smoothing`): −(1 − ε) log σ(β·h) − ε log σ(−β·h), ε ∈ [0, 0.5);
    - `ipo`   (h − 1/(2β))²          (Azar et al. 2023, eq. 17; β is their τ, the KL strength);
    - `slic`  max(0, 1 − β·h)        (SLiC-HF's hinge, Zhao et al. 2023, with 1/β as the margin δ).

    The reference log-probabilities are constants (computed without gradients).
    """
    loss_fn = PREFERENCE_LOSSES[check_preference_loss(loss)]
    check_positive("beta", beta)
    check_label_smoothing(label_smoothing, loss)
    if label_smoothing:
        loss_fn = partial(_dpo, label_smoothing=label_smoothing)
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("give both chosen_lengths and rejected_lengths (length normalisation) or neither")
    chosen_logratio = policy_chosen_logps - ref_chosen_logps
    rejected_logratio = policy_rejected_logps - ref_rejected_logps
    if chosen_lengths is not None:
        chosen_logratio = chosen_logratio / chosen_lengths
        rejected_logratio = rejected_logratio / rejected_lengths
    loss = loss_fn(chosen_logratio - rejected_logratio, beta).mean()
    return DPOOutput(loss, beta * chosen_logratio.detach(), beta * rejected_logratio.detach())


def check_preference_loss(loss: str) -> str:
    """A name of PREFERENCE_LOSSES; an earlier name is refused with the one to use now."""
    if loss in RENAMED_PREFERENCE_LOSSES:
        raise ValueError(f"model.loss={loss!r} is SLiC-HF's hinge on the log-ratio margin, now named "
                         f"model.loss={RENAMED_PREFERENCE_LOSSES[loss]} (divergence=hinge is the GAN's hinge loss)")
    return check_choice("model.loss", loss, PREFERENCE_LOSSES)


def check_label_smoothing(label_smoothing: float, loss: str) -> float:
    """ε of conservative DPO: in [0, 0.5) (at 0.5 the labels are coin flips), and only for `dpo`."""
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"model.label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
    if label_smoothing and loss != "dpo":
        raise ValueError(f"model.label_smoothing={label_smoothing!r} applies to model.loss=dpo only, not {loss!r}")
    return label_smoothing


# ---- PPO -------------------------------------------------------------------------------------


def last_token_index(mask: Tensor) -> Tensor:
    """Index of the last position with mask = 1 in each row [B]; every row needs one."""
    if not mask.bool().any(-1).all():
        raise ValueError("every sequence needs at least one completion token (a row of mask is all 0)")
    positions = torch.arange(1, mask.shape[-1] + 1, device=mask.device)
    return (mask.bool() * positions).argmax(-1)


def kl_penalized_rewards(logp: Tensor, logp_ref: Tensor, score: Tensor, beta: float | Tensor, mask: Tensor) -> Tensor:
    """Per-token RLHF reward [B, T] (Ziegler et al. 2019, eq. 2; Stiennon et al. 2020, eq. 1):

        r_t = −β (log π(y_t|·) − log π_ref(y_t|·)) + 1[t = last completion token] · score,

    with `score` [B] the reward model's (or the true) r(x, y) for the whole sequence, and 0 off
    the completion. Σ_t r_t = score − β · `sequence_kl_estimate`.
    """
    rewards = -beta * (logp - logp_ref).detach() * mask
    return rewards.scatter_add(-1, last_token_index(mask)[:, None], score.detach().to(rewards.dtype)[:, None])


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over token sequences [B, T].

        δ_t = r_t + γ V_{t+1} − V_t,     A_t = δ_t + γλ A_{t+1},     returns R_t = A_t + V_t,

    where V_{t+1} and A_{t+1} are 0 after the last completion token (the episode ends there, so
    padding never leaks in). λ = 1 gives A_t = Σ_{k≥t} γ^{k−t} r_k − V_t (the discounted return
    minus the value baseline; R_t is the discounted return); λ = 0 gives the one-step TD error
    A_t = δ_t. Outputs are 0 where mask = 0 and carry no gradient.
    """
    rewards, values, mask = rewards.detach(), values.detach(), mask.to(rewards.dtype)
    next_mask = F.pad(mask[:, 1:], (0, 1))
    next_values = F.pad(values[:, 1:], (0, 1)) * next_mask
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = deltas[:, t] + gamma * lam * next_mask[:, t] * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


class PPOPolicyLoss(NamedTuple):
    loss: Tensor  # scalar
    clip_fraction: Tensor  # share of completion tokens whose ratio was clipped
    approx_kl: Tensor  # E[½ (log π_new − log π_old)²], a low-variance KL(π_old ‖ π_new) estimate


def ppo_policy_loss(
    logp_new: Tensor, logp_old: Tensor, advantages: Tensor, clip_eps: float, mask: Tensor
) -> PPOPolicyLoss:
    """Clipped surrogate (Schulman et al. 2017, eq. 7), negated and averaged over completion tokens:

        L = −E_t[min(ρ_t A_t, clip(ρ_t, 1 − ε, 1 + ε) A_t)],   ρ_t = π_new(y_t|·)/π_old(y_t|·).

    On the clipped side (ρ > 1 + ε with A > 0, or ρ < 1 − ε with A < 0) the gradient is 0.
    """
    log_ratio = logp_new - logp_old.detach()
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return PPOPolicyLoss(loss, clip_fraction, approx_kl)


def ppo_value_loss(values_new: Tensor, values_old: Tensor, returns: Tensor, clip_eps: float, mask: Tensor) -> Tensor:
    """Clipped value loss ½ E_t[max((V − R)², (V_clip − R)²)], V_clip = V_old + clip(V − V_old, −ε, ε)
    (the PPO2 baselines / Ziegler et al. 2019 form), averaged over completion tokens."""
    values_old, returns = values_old.detach(), returns.detach()
    values_clipped = values_old + (values_new - values_old).clamp(-clip_eps, clip_eps)
    return 0.5 * masked_mean(torch.maximum((values_new - returns) ** 2, (values_clipped - returns) ** 2), mask)


@dataclass
class FixedKLController:
    """A constant KL coefficient β."""

    value: float

    def update(self, kl: float, n_steps: int) -> float:
        return self.value


@dataclass
class AdaptiveKLController:
    """Adaptive β that steers the observed KL towards `target` (Ziegler et al. 2019, §2.2):

        e = clip(KL/target − 1, −0.2, 0.2),     β ← β (1 + e · n_steps/horizon),

    with `n_steps` the samples (sequences) in the batch just seen. The paper writes the gain as
    K_β = 0.1; its code (lm-human-preferences `AdaptiveKLController`), TRL and OpenRLHF apply it as
    n_steps/horizon, which is the form here: a gain on top of that would damp the update twice.
    """

    value: float
    target: float
    horizon: int = 10_000

    def __post_init__(self):
        for key in ("value", "target", "horizon"):
            check_positive(f"kl_controller.{key}", getattr(self, key))

    def update(self, kl: float, n_steps: int) -> float:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
