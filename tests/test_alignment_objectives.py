import math

import numpy as np
import pytest
import torch

from divlab.lightning_modules import alignment_objectives as ao

pytestmark = pytest.mark.usefixtures("single_thread")


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# Hand-made sequence log-probabilities of two pairs: margins h = (0.5 + 0.5) = 1.0 and (0.0 − 0.5) = −0.5.
POLICY_CHOSEN, POLICY_REJECTED = [-1.0, -2.0], [-3.0, -1.5]
REF_CHOSEN, REF_REJECTED = [-1.5, -2.0], [-2.5, -2.0]
MARGINS = [1.0, -0.5]


def _dpo(loss: str, beta: float, policy_chosen=None, policy_rejected=None):
    t = torch.tensor
    return ao.dpo_loss(
        t(POLICY_CHOSEN) if policy_chosen is None else policy_chosen,
        t(POLICY_REJECTED) if policy_rejected is None else policy_rejected,
        t(REF_CHOSEN),
        t(REF_REJECTED),
        beta=beta,
        loss=loss,
    )


CLOSED_FORMS = {
    "dpo": lambda h, beta: -math.log(_sigmoid(beta * h)),
    "ipo": lambda h, beta: (h - 1.0 / (2.0 * beta)) ** 2,
    "slic": lambda h, beta: max(0.0, 1.0 - beta * h),
}


@pytest.mark.parametrize("loss", sorted(CLOSED_FORMS))
@pytest.mark.parametrize("beta", [0.1, 0.5, 3.0])
def test_preference_losses_match_closed_forms(loss, beta):
    out = _dpo(loss, beta)
    expected = sum(CLOSED_FORMS[loss](h, beta) for h in MARGINS) / len(MARGINS)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * 0.5, 0.0])
    assert out.rejected_rewards.tolist() == pytest.approx([beta * -0.5, beta * 0.5])
    margin = (out.chosen_rewards - out.rejected_rewards).tolist()
    assert margin == pytest.approx([beta * h for h in MARGINS])


@pytest.mark.parametrize("loss", sorted(CLOSED_FORMS))
def test_length_normalised_losses_use_per_token_log_ratios(loss):
    beta = 0.5
    t = torch.tensor
    chosen_lengths, rejected_lengths = t([2.0, 4.0]), t([5.0, 1.0])
    out = ao.dpo_loss(t(POLICY_CHOSEN), t(POLICY_REJECTED), t(REF_CHOSEN), t(REF_REJECTED), beta, loss,
                      chosen_lengths, rejected_lengths)
    chosen_ratios = [(p - r) / n for p, r, n in zip(POLICY_CHOSEN, REF_CHOSEN, [2, 4])]
    rejected_ratios = [(p - r) / n for p, r, n in zip(POLICY_REJECTED, REF_REJECTED, [5, 1])]
    margins = [c - r for c, r in zip(chosen_ratios, rejected_ratios)]
    assert margins != pytest.approx(MARGINS)  # normalising changes these margins
    expected = sum(CLOSED_FORMS[loss](h, beta) for h in margins) / len(margins)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * c for c in chosen_ratios])
    with pytest.raises(ValueError, match="both"):
        ao.dpo_loss(t(POLICY_CHOSEN), t(POLICY_REJECTED), t(REF_CHOSEN), t(REF_REJECTED), beta, loss, chosen_lengths)


@pytest.mark.parametrize("loss", sorted(CLOSED_FORMS))
def test_preference_gradient_raises_chosen_and_lowers_rejected(loss):
    chosen = torch.tensor(POLICY_CHOSEN, requires_grad=True)
    rejected = torch.tensor(POLICY_REJECTED, requires_grad=True)
    beta = 0.1  # β·h < 1 and h < 1/(2β) on both pairs: no loss is saturated
    _dpo(loss, beta, chosen, rejected).loss.backward()
    # Gradient descent moves logp by −grad: chosen up, rejected down.
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
    # DPO's weight on a pair is β·σ(−β h) / B: larger for the pair the policy ranks wrongly.
    if loss == "dpo":
        expected = [-beta * _sigmoid(-beta * h) / 2 for h in MARGINS]
        assert chosen.grad.tolist() == pytest.approx(expected, rel=1e-6)
        assert rejected.grad.tolist() == pytest.approx([-g for g in expected], rel=1e-6)


def test_preference_loss_rejects_unknown_variant_and_bad_beta():
    with pytest.raises(ValueError, match="dpo, ipo, slic"):
        _dpo("kto", 0.1)
    with pytest.raises(ValueError, match="model.loss=slic"):
        _dpo("hinge", 0.1)
    with pytest.raises(ValueError, match="beta"):
        _dpo("dpo", 0.0)


def test_conservative_dpo_matches_its_closed_form_on_fixed_numbers():
    # cDPO with ε = 0.2, β = 0.5 on margins h = 1 and −0.5, by hand:
    #   pair 1: −0.8·log σ(0.5) − 0.2·log σ(−0.5) = 0.8·0.474077 + 0.2·0.974077 = 0.574077
    #   pair 2: −0.8·log σ(−0.25) − 0.2·log σ(0.25) = 0.8·0.825939 + 0.2·0.575939 = 0.775939
    t = torch.tensor
    out = ao.dpo_loss(t(POLICY_CHOSEN), t(POLICY_REJECTED), t(REF_CHOSEN), t(REF_REJECTED), 0.5,
                      label_smoothing=0.2)
    assert out.loss.item() == pytest.approx((0.574077 + 0.775939) / 2, abs=1e-6)
    # ε = 0 is plain DPO, exactly; ε moves the loss towards −log σ(−βh) (the flipped label's loss)
    plain = ao.dpo_loss(t(POLICY_CHOSEN), t(POLICY_REJECTED), t(REF_CHOSEN), t(REF_REJECTED), 0.5, label_smoothing=0.0)
    assert torch.equal(plain.loss, _dpo("dpo", 0.5).loss)
    with pytest.raises(ValueError, match=r"model.label_smoothing must be in \[0, 0.5\), got 0.5"):
        ao.dpo_loss(t(POLICY_CHOSEN), t(POLICY_REJECTED), t(REF_CHOSEN), t(REF_REJECTED), 0.5, label_smoothing=0.5)
    with pytest.raises(ValueError, match="applies to model.loss=dpo only, not 'ipo'"):
        ao.dpo_loss(t(POLICY_CHOSEN), t(POLICY_REJECTED), t(REF_CHOSEN), t(REF_REJECTED), 0.5, "ipo",
                    label_smoothing=0.1)


def test_bradley_terry_loss_and_accuracy():
    r_w, r_l = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([1.0, 0.0, 1.0])
    expected = -(math.log(_sigmoid(1.0)) + math.log(0.5) + math.log(_sigmoid(-2.0))) / 3
    assert ao.bradley_terry_loss(r_w, r_l).item() == pytest.approx(expected, rel=1e-6)
    assert ao.pair_accuracy(r_w, r_l).item() == pytest.approx(1 / 3)


def test_bradley_terry_reward_model_separates_synthetic_preferences():
    gen = torch.Generator().manual_seed(0)
    dim, n_train, n_test = 8, 512, 512
    w_true = torch.randn(dim, generator=gen)

    def pairs(n):
        a, b = torch.randn(n, dim, generator=gen), torch.randn(n, dim, generator=gen)
        a_wins = (a @ w_true > b @ w_true)[:, None]
        return torch.where(a_wins, a, b), torch.where(a_wins, b, a)

    (train_w, train_l), (test_w, test_l) = pairs(n_train), pairs(n_test)
    torch.manual_seed(0)
    scorer = torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(scorer.parameters(), lr=1e-2)
    for _ in range(300):
        loss = ao.bradley_terry_loss(scorer(train_w).squeeze(-1), scorer(train_l).squeeze(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = ao.pair_accuracy(scorer(test_w).squeeze(-1), scorer(test_l).squeeze(-1)).item()
    assert accuracy >= 0.9


# ---- PPO -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ratio, advantage, clipped",
    [
        (1.5, 1.0, True),  # ρ > 1 + ε with A > 0: the gain is capped
        (0.5, -1.0, True),  # ρ < 1 − ε with A < 0: the gain is capped
        (0.5, 1.0, False),  # ρ < 1 − ε with A > 0: the pessimistic bound keeps the unclipped term
        (1.5, -1.0, False),
        (1.1, 1.0, False),  # inside [1 − ε, 1 + ε]
        (0.9, -1.0, False),
    ],
)
def test_ppo_clipped_surrogate_gradient(ratio, advantage, clipped):
    eps = 0.2
    logp_old = torch.tensor([[-1.0, -2.0, -0.5]])
    logp_new = (logp_old + torch.tensor([[0.0, math.log(ratio), 0.0]])).requires_grad_(True)
    advantages = torch.tensor([[0.0, advantage, 0.0]])
    mask = torch.tensor([[0, 1, 1]])
    out = ao.ppo_policy_loss(logp_new, logp_old, advantages, eps, mask)
    out.loss.backward()
    grad = logp_new.grad[0, 1].item()
    if clipped:
        assert grad == 0.0
        assert out.loss.item() == pytest.approx(-advantage * min(max(ratio, 1 - eps), 1 + eps) / 2)
        assert out.clip_fraction.item() == pytest.approx(0.5)
    else:
        # d/dlogπ of −A·ρ/N_tokens with ρ = exp(logπ − logπ_old)
        assert grad == pytest.approx(-advantage * ratio / 2, rel=1e-5)
        assert out.clip_fraction.item() == 0.0
    assert logp_new.grad[0, 0].item() == 0.0  # the prompt token is masked out


def test_ppo_value_loss_is_pessimistic_clipped_mse():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    new = torch.tensor([[0.0, 1.0, -0.05]], requires_grad=True)
    returns = torch.tensor([[0.0, 2.0, 1.0]])
    mask = torch.tensor([[0, 1, 1]])
    loss = ao.ppo_value_loss(new, old, returns, 0.2, mask)
    # token 1: max((1 − 2)², (0.2 − 2)²) = 3.24 (clipped term, no gradient); token 2: unclipped (1.05)².
    assert loss.item() == pytest.approx(0.5 * (3.24 + 1.05**2) / 2, rel=1e-6)
    loss.backward()
    assert new.grad[0, 1].item() == 0.0 and new.grad[0, 2].item() == pytest.approx(-1.05 / 2, rel=1e-5)


def _toy_rollout():
    """Two sequences of 7 positions: prompt (mask 0), completion (mask 1), then padding (mask 0)."""
    gen = torch.Generator().manual_seed(3)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0, 0]])
    rewards = torch.randn(2, 7, generator=gen)
    values = torch.randn(2, 7, generator=gen)
    return rewards, values, mask


def _completion(mask_row):
    idx = mask_row.nonzero().squeeze(-1).tolist()
    return idx


def _completion_tokens(mask):
    """(row b, completion position t, all completion positions of row b) for every completion token."""
    for b in range(mask.shape[0]):
        steps = _completion(mask[b])
        for t in steps:
            yield b, t, steps


def test_gae_lambda_one_is_discounted_return_minus_value():
    rewards, values, mask = _toy_rollout()
    gamma = 0.9
    advantages, returns = ao.gae(rewards, values, mask, gamma=gamma, lam=1.0)
    for b, t, steps in _completion_tokens(mask):
        discounted = sum(gamma ** (k - t) * rewards[b, k].item() for k in steps if k >= t)
        assert returns[b, t].item() == pytest.approx(discounted, abs=1e-5)
        assert advantages[b, t].item() == pytest.approx(discounted - values[b, t].item(), abs=1e-5)
    assert (advantages[mask == 0] == 0).all() and (returns[mask == 0] == 0).all()


def test_gae_lambda_zero_is_one_step_td_error():
    rewards, values, mask = _toy_rollout()
    gamma = 0.8
    advantages, _ = ao.gae(rewards, values, mask, gamma=gamma, lam=0.0)
    for b, t, steps in _completion_tokens(mask):
        next_value = values[b, t + 1].item() if t != steps[-1] else 0.0  # V = 0 after the episode ends
        delta = rewards[b, t].item() + gamma * next_value - values[b, t].item()
        assert advantages[b, t].item() == pytest.approx(delta, abs=1e-5)


def test_gae_intermediate_lambda_is_the_explicit_sum_of_discounted_td_errors():
    # A_t = Σ_{l≥0} (γλ)^l δ_{t+l} within the episode (Schulman et al. 2016, eq. 16), summed directly.
    rewards, values, mask = _toy_rollout()
    gamma, lam = 0.9, 0.7
    advantages, returns = ao.gae(rewards, values, mask, gamma=gamma, lam=lam)
    for b in range(2):
        steps = _completion(mask[b])
        deltas = {t: rewards[b, t].item() + gamma * (values[b, t + 1].item() if t != steps[-1] else 0.0)
                  - values[b, t].item() for t in steps}
        for t in steps:
            expected = sum((gamma * lam) ** (k - t) * deltas[k] for k in steps if k >= t)
            assert advantages[b, t].item() == pytest.approx(expected, abs=1e-5)
            assert returns[b, t].item() == pytest.approx(expected + values[b, t].item(), abs=1e-5)


def test_gae_two_step_episode_by_hand():
    # r = (1, 2), V = (0.5, 0.25), γ = 0.9, λ = 0.5: δ₁ = 2 − 0.25 = 1.75, δ₀ = 1 + 0.9·0.25 − 0.5 = 0.725,
    # A₁ = 1.75, A₀ = 0.725 + 0.45·1.75 = 1.5125.
    rewards, values = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[9.0, 0.5, 0.25]])
    advantages, _ = ao.gae(rewards, values, torch.tensor([[0, 1, 1]]), gamma=0.9, lam=0.5)
    assert advantages[0].tolist() == pytest.approx([0.0, 1.5125, 1.75])


def test_masked_whiten_uses_only_valid_tokens():
    x = torch.tensor([[1.0, 2.0, 1e6], [4.0, -1e6, 7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    valid = np.array([1.0, 2.0, 4.0, 7.0])
    mean, std = valid.mean(), valid.std()  # 3.5 and √5.25: population std over the 4 valid tokens
    whitened = ao.masked_whiten(x, mask)
    assert whitened[mask.bool()].tolist() == pytest.approx(((valid - mean) / std).tolist(), rel=1e-6)
    assert (whitened[~mask.bool()] == 0).all()


def test_kl_penalized_rewards_put_the_score_on_the_last_completion_token():
    _, logp, mask = _toy_rollout()
    logp_ref = logp - 0.3
    score = torch.tensor([1.5, -2.0])
    rewards = ao.kl_penalized_rewards(logp, logp_ref, score, beta=0.1, mask=mask)
    assert rewards[0, 5].item() == pytest.approx(1.5 - 0.03) and rewards[1, 3].item() == pytest.approx(-2.0 - 0.03)
    assert rewards[0, 2].item() == pytest.approx(-0.03) and (rewards[mask == 0] == 0).all()
    kl = ao.sequence_kl_estimate(logp, logp_ref, mask)
    assert rewards.sum(-1).tolist() == pytest.approx((score - 0.1 * kl).tolist())
    with pytest.raises(ValueError, match="at least one completion token"):
        ao.kl_penalized_rewards(logp, logp_ref, score, 0.1, torch.zeros_like(mask))


def test_kl_controllers():
    fixed = ao.FixedKLController(0.05)
    assert fixed.update(kl=100.0, n_steps=64) == 0.05
    adaptive = ao.AdaptiveKLController(value=0.1, target=6.0, horizon=1000)
    # The sequence TRL's / OpenRLHF's AdaptiveKLController gives, by hand: β ← β(1 + clip(KL/6 − 1, ±0.2)·100/1000).
    assert adaptive.update(kl=12.0, n_steps=100) == pytest.approx(0.102, rel=1e-12)  # +1 clipped to +0.2: ×1.02
    assert adaptive.update(kl=3.0, n_steps=100) == pytest.approx(0.09996, rel=1e-12)  # −0.5 clipped to −0.2: ×0.98
    assert adaptive.update(kl=6.6, n_steps=100) == pytest.approx(0.1009596, rel=1e-12)  # +0.1: ×1.01
    assert adaptive.update(kl=6.0, n_steps=100) == pytest.approx(0.1009596, rel=1e-12)  # on target: unchanged
    assert adaptive.update(kl=5.7, n_steps=500) == pytest.approx(0.09843561, rel=1e-12)  # −0.05·0.5: ×0.975
    with pytest.raises(ValueError, match="target"):
        ao.AdaptiveKLController(value=0.1, target=0.0)


# ---- sequences -------------------------------------------------------------------------------


def test_sequence_kl_estimate_is_unbiased_for_categoricals():
    """Tokens i.i.d. from p; KL(p^T ‖ q^T) = T·KL(p‖q) exactly; the MC mean is within 4 SE."""
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    q = torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2])
    exact = 3 * (p * (p / q).log()).sum().item()
    n, t = 20_000, 4
    tokens = torch.multinomial(p, n * t, replacement=True, generator=gen).view(n, t)
    mask = torch.tensor([[0, 1, 1, 1]]).expand(n, t)  # position 0 is a prompt token
    estimates = ao.sequence_kl_estimate(p.log()[tokens], q.log()[tokens], mask)
    se = estimates.std().item() / math.sqrt(n)
    assert abs(estimates.mean().item() - exact) < 4 * se
    assert se < 0.05 * exact  # the test has the power to see a biased estimator
