"""The bag-of-words Bradley–Terry reward model (divlab/lightning_modules/bag_of_words.py), alone and as PPO's reward
model.

Its weights are checked against the optimality condition of the objective written out here (the gradient of the
regularised Bradley–Terry log-likelihood vanishes at the fit), its scores against counts by hand.
"""
import json

import pytest
import torch

from divlab.lightning_modules.bag_of_words import BagOfWordsRewardModel, masked_texts, words

ALPHABET = " abcdefghijklmnopqrstuvwxyz'"


def decode(ids: list[int]) -> str:
    return "".join(ALPHABET[i] for i in ids)


def encode(text: str) -> list[int]:
    return [ALPHABET.index(c) for c in text]


CHOSEN = ["good day", "a good friend", "good", "kind words", "a kind good man", "fair day", "bad but good good"]
REJECTED = ["bad day", "a bad friend", "bad", "foul words", "a foul man", "bad day", "good bad bad"]


def test_words_are_lower_cased_runs_of_letters_and_apostrophes():
    assert words("Don't STOP, good-bye\n3 o'clock") == ["don't", "stop", "good", "bye", "o'clock"]


def test_the_fit_is_the_optimum_of_the_regularised_bradley_terry_likelihood():
    model = BagOfWordsRewardModel(decode, n_words=50, l2=0.5).fit_texts(CHOSEN, REJECTED)
    w = model.weights.double().requires_grad_(True)

    def counts(text):
        return torch.tensor([float(words(text).count(word)) for word in model.vocabulary], dtype=torch.float64)

    delta = torch.stack([counts(c) - counts(r) for c, r in zip(CHOSEN, REJECTED)])
    # −Σ log σ(w·Δ) over both orders of every pair, + (l2 / 2)‖w‖²; at the fit its gradient is 0
    objective = 2 * torch.nn.functional.softplus(-delta @ w).sum() + 0.5 * 0.5 * w.square().sum()
    (gradient,) = torch.autograd.grad(objective, w)
    assert gradient.abs().max().item() < 1e-3
    assert set(model.vocabulary) == {word for text in CHOSEN + REJECTED for word in words(text)}
    weight = dict(zip(model.vocabulary, model.weights.tolist()))
    assert weight["good"] > 0 > weight["bad"] and weight["kind"] > 0 > weight["foul"]
    # r(y) = w · counts(y), by hand
    assert model.score_texts(["good good bad, fair"]).item() == pytest.approx(
        2 * weight["good"] + weight["bad"] + weight["fair"], abs=1e-6)


def test_the_vocabulary_is_the_most_frequent_words_and_unknown_words_score_zero():
    model = BagOfWordsRewardModel(decode, n_words=2).fit_texts(CHOSEN, REJECTED)
    assert model.vocabulary == ["good", "bad"]  # 8 and 7 occurrences; every other word fewer
    assert model.score_texts(["unheard of words"]).item() == 0.0


def test_rewards_read_only_the_masked_completion_tokens():
    model = BagOfWordsRewardModel(decode).fit_texts(CHOSEN, REJECTED)
    tokens = torch.tensor([encode("bad  good  "), encode("good bad   ")])
    mask = torch.tensor([[0] * 5 + [1] * 6, [1] * 4 + [0] * 7])  # row 0: " good  " (its prompt "bad  " unread)
    assert masked_texts(decode, tokens, mask) == ["good  ", "good"]
    torch.testing.assert_close(model.rewards(tokens, mask), model.score_texts(["good", "good"]))
    batch = {"chosen_ids": tokens, "chosen_mask": mask, "rejected_ids": tokens, "rejected_mask": 1 - mask}
    chosen, rejected = model.pair_rewards(batch)
    torch.testing.assert_close(rejected, model.score_texts(["bad", "bad"]))
    assert (chosen > rejected).all()


def test_a_state_dict_restores_the_vocabulary_and_weights():
    fitted = BagOfWordsRewardModel(decode).fit_texts(CHOSEN, REJECTED)
    restored = BagOfWordsRewardModel(decode)
    assert not restored.fitted
    restored.load_state_dict(fitted.state_dict())
    assert restored.vocabulary == fitted.vocabulary
    torch.testing.assert_close(restored.score_texts(CHOSEN), fitted.score_texts(CHOSEN))


def test_bad_settings_and_unfitted_use_are_refused_by_name():
    with pytest.raises(ValueError, match="bag-of-words reward model: n_words must be >= 1, got 0"):
        BagOfWordsRewardModel(decode, n_words=0)
    with pytest.raises(ValueError, match="bag-of-words reward model: l2 must be > 0, got -1.0"):
        BagOfWordsRewardModel(decode, l2=-1.0)
    with pytest.raises(RuntimeError, match="before it was fitted"):
        BagOfWordsRewardModel(decode).score_texts(["good"])
    with pytest.raises(ValueError, match="hold no words"):
        BagOfWordsRewardModel(decode).fit_texts(["   "], ["  "])


def test_ppo_fits_a_bag_of_words_reward_model_and_measures_its_held_out_accuracy(train_with, tmp_path):
    from tests.test_alignment_family import TINY_EVALUATION, TINY_OVERRIDES

    cfg, metrics = train_with("experiment=align_ppo", "model.reward_model=bag_of_words", "model.ppo_epochs=1",
                              TINY_EVALUATION, *TINY_OVERRIDES)
    assert cfg.model.reward_model == "bag_of_words"
    assert 0.0 <= metrics["val/reward_model_accuracy"] <= 1.0
    assert {"val/true_reward", "val/kl_to_ref", "train/score"} <= set(metrics)
    assert json.loads((tmp_path / "run.json").read_text())["divergence"] == "ppo"
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["reward_model._extra_state"]["vocabulary"]  # a resumed run reads the fitted model back
    assert state["reward_model.weights"].shape == (len(state["reward_model._extra_state"]["vocabulary"]),)
