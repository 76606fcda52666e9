"""The alignment family as modules and runs: reward model, DPO (and IPO/hinge), PPO, their configs.

The objectives' closed forms are tested in test_alignment_objectives.py; here each module takes
real steps on a tiny reference policy (a 1-layer char GPT trained for a few dozen steps, cached
under the data dir like the default policy).
"""
import copy
import functools
import json
import math
import os
import re

import pytest
import torch

from divlab.alignment.controlled_task import sentiment_reward
from divlab.cli.reference_policy import prepare_reference_policy
from divlab.datamodules.preferences import collate_preferences, tokenize_record
from divlab.lightning_modules.dpo import DPO
from divlab.lightning_modules.reference_policy import load_reference_policy
from divlab.lightning_modules.sequence import sequence_log_prob

pytestmark = pytest.mark.usefixtures("single_thread")

# experiment=reference_policy, tiny: a 1-layer char GPT after 40 steps
TINY_POLICY = ["model.backbone.n_layer=1", "model.backbone.n_embd=32", "data.block_size=48", "data.batch_size=16",
               "data.batches_per_epoch=40", "trainer.max_steps=40", "model.optimizer.lr=3.0e-3",
               "data.val_windows=16", "data.test_windows=16", "callbacks.samples.n_samples=2"]


def policy_overrides(overrides: list[str]) -> str:
    """`policy.overrides=[...]` on the command line: the default policy's overrides of experiment=reference_policy."""
    return "policy.overrides=[" + ",".join(json.dumps(o) for o in overrides) + "]"


TINY_POLICY_OVERRIDE = policy_overrides(TINY_POLICY)
TINY_OVERRIDES = [
    "logger=csv",
    TINY_POLICY_OVERRIDE,
    "data.n_prompts=48",
    "data.drop_ties=false",
    "data.prompt_length=6",
    "data.completion_length=10",
    "debug=tiny",
]
TINY_EVALUATION = "callbacks.alignment.n_prompts=8"
ADAM = functools.partial(torch.optim.Adam, lr=1e-2)


@pytest.fixture(scope="module")
def policy_spec():
    data_dir = os.environ.get("DIVLAB_DATA_DIR", os.path.expanduser("~/.cache/divlab/data"))  # as configs/paths
    spec = {"ckpt_path": None, "data_dir": data_dir, "overrides": TINY_POLICY}
    prepare_reference_policy(**spec)  # the setup step train.py runs: train and cache the tiny policy once
    return spec


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def preference_batch(reference, records, max_length=40):
    examples = [{**tokenize_record(r, reference.text.encode, max_length, "test", i), "index": i}
                for i, r in enumerate(records)]
    return collate_preferences(examples)


PAIRS = [
    {"prompt": "KING: ", "chosen": "my good lord", "rejected": "thou vile wretch"},
    {"prompt": "Enter ", "chosen": "sweet love", "rejected": "bloody death"},
]


# ---- DPO --------------------------------------------------------------------------------------


def one_dpo_step(model, batch):
    """One optimiser step of `model` on `batch`: the loss and π's (chosen, rejected) log-probs before and after."""
    optimizer = model.configure_optimizers()

    def logps():
        with torch.no_grad():
            return model.policy_logprobs(batch).chunk(2)

    before = logps()
    loss = model.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    return loss, before, logps()


@pytest.mark.parametrize("loss, length_normalize", [("dpo", False), ("ipo", False), ("ipo", True), ("slic", False)])
@pytest.mark.parametrize("pair", PAIRS)
def test_dpo_step_raises_chosen_and_lowers_rejected_logprob(policy_spec, loss, length_normalize, pair):
    # One plain gradient step on one pair: the change follows the gradient (Adam's first step would not).
    sgd = functools.partial(torch.optim.SGD, lr=1e-3)
    model = DPO((48,), policy_spec, sgd, loss=loss, beta=0.5, length_normalize=length_normalize)
    assert model.hparams.divergence == loss  # the run record's divergence is the preference loss's name
    batch = preference_batch(load_reference_policy(**policy_spec), [pair])
    loss, (chosen0, rejected0), (chosen1, rejected1) = one_dpo_step(model, batch)
    assert torch.isfinite(loss)
    assert chosen1.item() > chosen0.item() and rejected1.item() < rejected0.item()
    # π_ref is untouched (π started equal to it) and its log-probabilities were cached by record
    ref = sequence_log_prob(model.reference, batch["chosen_ids"], batch["chosen_mask"])
    assert torch.allclose(ref, chosen0, atol=1e-5) and set(model._reference_cache) == {0}


def test_dpo_logs_training_scalars_on_logging_steps_only_and_writes_what_logging_every_step_wrote(policy_spec,
                                                                                                   monkeypatch):
    import lightning as L

    from divlab.lightning_modules import dpo as dpo_module
    from tests.test_benchmarks_logging_steps import RecordingLogger

    batch = preference_batch(load_reference_policy(**policy_spec), PAIRS)

    def train() -> tuple[list, dict, int]:
        torch.manual_seed(0)
        model, logger, calls = DPO((48,), policy_spec, ADAM), RecordingLogger(), []
        log = model.log
        monkeypatch.setattr(model, "log", lambda name, *a, **k: (calls.append(name), log(name, *a, **k))[1])
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=logger, log_every_n_steps=4, limit_val_batches=0,
                            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False)
        trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader([batch] * 9, batch_size=None))
        return logger.rows, {k: float(v) for k, v in trainer.logged_metrics.items()}, calls.count("train/loss")

    rows, final, logged_steps = train()
    monkeypatch.setattr(dpo_module, "is_logging_step", lambda module, batch_idx: True)
    every_step_rows, every_step_final, every_step = train()
    assert [step for step, _ in rows] == [3, 7] and rows == every_step_rows and final == every_step_final
    assert (logged_steps, every_step) == (3, 9)  # steps 3 and 7 (log_every_n_steps) and the epoch's last batch


@pytest.mark.parametrize("kwargs, fragment", [
    ({"loss": "kto"}, "unknown model.loss 'kto'; valid choices: dpo, ipo, slic"),
    ({"loss": None}, "unknown model.loss None; valid choices: dpo, ipo, slic"),
    ({"loss": "hinge"}, "model.loss='hinge' is SLiC-HF's hinge on the log-ratio margin, now named model.loss=slic"),
    ({"label_smoothing": 0.7}, "model.label_smoothing must be in [0, 0.5), got 0.7"),
    ({"loss": "slic", "label_smoothing": 0.1}, "applies to model.loss=dpo only, not 'slic'"),
    ({"beta": -0.1}, "model.beta must be > 0, got -0.1"),
])
def test_dpo_bad_settings_name_the_value(policy_spec, kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        DPO((48,), policy_spec, ADAM, **kwargs)


def test_a_task_longer_than_the_policys_context_is_refused_before_sampling(policy_spec, tmp_path, monkeypatch):
    from divlab.alignment import controlled_task

    monkeypatch.setattr(controlled_task, "sample_records", lambda *a, **k: pytest.fail("sampled before checking"))
    # TINY_POLICY's block_size 48 holds BOS + 47 tokens: 8 + 40 is one too many (PPO's value head would fail on it).
    with pytest.raises(ValueError, match=r"8 \+ 40 = 48 exceeds 47.*block_size \(48\).*at most 39"):
        controlled_task.controlled_sentiment(policy_spec, prompt_length=8, completion_length=40)


def test_the_task_samples_in_bounded_rollout_batches_and_one_batch_gives_the_same_draws(policy_spec, monkeypatch):
    # All n_prompts × k sequences in one rollout exhausted 24 GB at 65,536 prompts × 4 (the KV cache grows with B).
    from divlab.alignment import controlled_task

    reference = load_reference_policy(**policy_spec)
    task = dict(n_prompts=7, prompt_length=6, completion_length=5, label_temperature=0.1, seed=3, samples_per_prompt=3)
    whole = controlled_task.sample_records(reference, **task)
    batches = []
    rollout = controlled_task.rollout
    monkeypatch.setattr(
        controlled_task, "rollout", lambda model, ids, n: batches.append(len(ids)) or rollout(model, ids, n)
    )
    monkeypatch.setattr(controlled_task, "ROLLOUT_CHUNK", 8)
    chunked = controlled_task.sample_records(reference, **task)
    assert batches == [8, 8, 5] and len(chunked) == 7 * 3
    assert [r["prompt"] for r in chunked] == [r["prompt"] for r in whole]
    assert all(len(r["chosen"]) == len(r["rejected"]) == 5 for r in chunked)
    batches.clear()
    monkeypatch.setattr(controlled_task, "ROLLOUT_CHUNK", 21)  # everything in one batch: the draws of before
    assert controlled_task.sample_records(reference, **task) == whole and batches == [21]


def test_missing_policy_checkpoint_names_the_path(policy_spec, tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=f"policy.ckpt_path='{missing}' does not exist"):
        DPO((48,), {**policy_spec, "ckpt_path": str(missing)}, ADAM)


def test_align_dpo_experiment_trains_and_logs_the_frontier_metrics(train_with, tmp_path, monkeypatch):
    from divlab.callbacks import alignment_metrics

    evaluations, reference_rewards = [], []
    evaluate, true_reward_of = alignment_metrics.AlignmentMetrics.evaluate, alignment_metrics.true_reward_of
    monkeypatch.setattr(alignment_metrics.AlignmentMetrics, "evaluate",
                        lambda *args: evaluations.append(1) or evaluate(*args))
    monkeypatch.setattr(alignment_metrics, "true_reward_of",
                        lambda *args: reference_rewards.append(1) or true_reward_of(*args))
    cfg, metrics = train_with("experiment=align_dpo", "model.loss=ipo", TINY_EVALUATION, *TINY_OVERRIDES)
    # π at every validation and π_ref's reward once; none at the sanity check, whose metrics Lightning drops
    assert "num_sanity_val_steps" not in cfg.trainer  # Lightning's default, 2: a sanity check runs
    assert len(evaluations) == cfg.trainer.max_epochs and len(reference_rewards) == 1
    for key in ("val/true_reward", "val/kl_to_ref", "val/ref_true_reward", "val/implicit_reward_margin",
                "val/implicit_reward_accuracy", "train/loss"):
        assert key in metrics, key
    assert metrics["val/kl_to_ref"] != 0  # π moved away from π_ref (3 steps: the 8-sample estimate may be < 0)

    record = json.loads((tmp_path / "run.json").read_text())
    assert (record["family"], record["divergence"], record["data"]) == ("align", "ipo", "controlled_sentiment")
    assert list((tmp_path / "samples").glob("val_samples_step*.txt"))


# ---- reward model -----------------------------------------------------------------------------


def synthetic_pairs(n, seed=0):
    """Separable: chosen completions are vowels, rejected ones consonants, after a shared prompt."""
    g = torch.Generator().manual_seed(seed)

    def text(alphabet, length=6):
        return "".join(alphabet[i] for i in torch.randint(len(alphabet), (length,), generator=g).tolist())

    return [{"prompt": text("abcdefgh ", 4), "chosen": text("aeiou"), "rejected": text("tkdrsn")} for _ in range(n)]


def test_reward_readouts_by_hand():
    from divlab.lightning_modules.reward_model import read_reward

    # Output position i has read BOS and tokens[:i]; completion tokens 1 and 2 of the first row, 0..3 of the second.
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0, 50.0]])
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]])
    assert read_reward(scores, mask, "last").tolist() == [3.0, 50.0]  # after tokens[:3] and tokens[:4]
    assert read_reward(scores, mask, "sum").tolist() == [2.0 + 3.0, 20.0 + 30.0 + 40.0 + 50.0]
    with pytest.raises(ValueError, match="unknown model.readout 'mean'; valid choices: last, sum"):
        read_reward(scores, mask, "mean")


def test_reward_model_separates_a_separable_preference_set(policy_spec):
    import lightning as L

    from divlab.datamodules.preferences import PreferenceDataModule
    from divlab.lightning_modules.reward_model import RewardModel

    reference = load_reference_policy(**policy_spec)
    data = PreferenceDataModule(reference.text.encode, records=synthetic_pairs(160), max_length=16,
                                val_fraction=0.25, batch_size=16)
    model = RewardModel((16,), policy_spec, functools.partial(torch.optim.AdamW, lr=3e-3), readout="last")
    trainer = L.Trainer(max_steps=40, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    (result,) = trainer.validate(model, datamodule=data, verbose=False)
    assert result["val/reward_model_accuracy"] >= 0.9
    batch = preference_batch(reference, PAIRS)
    assert model.rewards(batch["chosen_ids"], batch["chosen_mask"]).shape == (2,)


def test_reward_model_second_stage_starts_from_a_checkpoint_and_decays_its_rate_to_zero(policy_spec, tmp_path):
    """`init_from` copies the weights of a reward model checkpoint (and refuses another readout or a missing
    file by name); a cosine `scheduler` with T_max = the run's steps ends at rate 0."""
    import lightning as L

    from divlab.datamodules.preferences import PreferenceDataModule
    from divlab.lightning_modules.reward_model import RewardModel

    reference = load_reference_policy(**policy_spec)
    data = PreferenceDataModule(reference.text.encode, records=synthetic_pairs(64), max_length=16,
                                val_fraction=0.25, batch_size=16)
    first = RewardModel((16,), policy_spec, functools.partial(torch.optim.AdamW, lr=3e-3), readout="sum")
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        default_root_dir=tmp_path)
    trainer.fit(first, datamodule=data)
    ckpt = tmp_path / "first.ckpt"
    trainer.save_checkpoint(ckpt)

    cosine = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=3)
    second = RewardModel((16,), policy_spec, functools.partial(torch.optim.AdamW, lr=3e-3), readout="sum",
                         scheduler=cosine, init_from=str(ckpt))
    fresh = RewardModel((16,), policy_spec, ADAM, readout="sum")
    for name, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], value), name
    assert any(not torch.equal(fresh.state_dict()[n], v) for n, v in first.state_dict().items())
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(second, datamodule=data)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert trainer.lr_scheduler_configs[0].interval == "step"

    with pytest.raises(ValueError, match="readout='sum'.*model.readout='last'"):
        RewardModel((16,), policy_spec, ADAM, readout="last", init_from=str(ckpt))
    with pytest.raises(FileNotFoundError, match="model.init_from='nowhere.ckpt'"):
        RewardModel((16,), policy_spec, ADAM, init_from="nowhere.ckpt")


# ---- PPO --------------------------------------------------------------------------------------


def prompt_batch(reference, n=8, length=6):
    from divlab.callbacks.alignment_metrics import eval_prompts

    prompts = eval_prompts(reference, n, length, seed=3)
    return {"prompt_ids": prompts, "prompt_mask": torch.ones_like(prompts)}


def test_ppo_iteration_moves_the_policy_with_finite_losses(policy_spec):
    import lightning as L

    from divlab.callbacks.alignment_metrics import evaluate_policy
    from divlab.lightning_modules.ppo import PPO

    reference = load_reference_policy(**policy_spec)
    model = PPO((48,), policy_spec, functools.partial(torch.optim.AdamW, lr=3e-3), kl_coef=0.05,
                kl_controller="adaptive", kl_target=1.0, completion_length=8, ppo_epochs=2, minibatch_size=4,
                reward_model=None, true_reward=sentiment_reward)
    before = [p.detach().clone() for p in model.policy.parameters()]
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader([prompt_batch(reference)], batch_size=None))
    assert not model.automatic_optimization and trainer.global_step == 4  # 2 epochs × 2 minibatches, one step each
    assert all(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    for key in ("train/policy_loss", "train/value_loss", "train/score", "train/kl_coef", "train/approx_kl"):
        assert torch.isfinite(trainer.callback_metrics[key]), key
    assert model.kl_control.value != 0.05  # the adaptive controller reacted to the rollouts' KL
    prompts = prompt_batch(reference, n=64)["prompt_ids"]
    kl = evaluate_policy(model.policy, model.reference, prompts, 8, reference.text.decode, sentiment_reward).kl_to_ref
    assert math.isfinite(kl)  # a Monte-Carlo estimate: near 0 after 4 small steps, of either sign
    # The exact KL(π‖π_ref) of the next-token distributions after every prompt prefix: > 0 once π has moved.
    with torch.no_grad():
        inputs = torch.cat([torch.full_like(prompts[:, :1], model.policy.bos), prompts], 1)
        log_pi, log_ref = (m.backbone(inputs).log_softmax(-1) for m in (model.policy, model.reference))
        assert (log_pi.exp() * (log_pi - log_ref)).sum(-1).mean() > 0


def test_the_reference_reward_is_that_of_the_same_seeded_samples(policy_spec):
    # π_ref's reward (val/ref_true_reward) is scored on the completions evaluate_policy would draw from the same
    # seed, without the KL to itself, which is exactly 0 there.
    from divlab.callbacks.alignment_metrics import evaluate_policy, seeded_rollout, true_reward_of

    reference = load_reference_policy(**policy_spec)
    prompts = prompt_batch(reference, n=32)["prompt_ids"]
    decode = reference.text.decode
    full = evaluate_policy(reference.model, reference.model, prompts, 16, decode, sentiment_reward, seed=5)
    assert full.kl_to_ref == 0.0
    assert true_reward_of(reference.model, prompts, 16, decode, sentiment_reward, seed=5) == full.true_reward
    same, other = (seeded_rollout(reference.model, prompts, 16, seed)[0] for seed in (5, 6))
    assert torch.equal(same, seeded_rollout(reference.model, prompts, 16, 5)[0]) and not torch.equal(same, other)


class SumOfTokensReward(torch.nn.Module):
    """A stand-in reward model: gain × (sum of completion token ids) / 100 + offset."""

    def __init__(self, gain: float, offset: float):
        super().__init__()
        self.gain, self.offset = gain, offset

    def rewards(self, tokens, mask):
        return self.gain * (tokens.float() * mask).sum(-1) / 100 + self.offset


def test_reward_model_scores_are_normalised_on_reference_completions(policy_spec):
    from divlab.lightning_modules.ppo import PPO
    from divlab.lightning_modules.sequence import rollout

    reference = load_reference_policy(**policy_spec)
    loader = [prompt_batch(reference, n=16) for _ in range(4)]
    torch.manual_seed(1)
    tokens, mask = rollout(reference.model, loader[0]["prompt_ids"], 8)
    scores = {}
    for name, (gain, offset, normalization) in {"raw": (1.0, 0.0, "reference"), "affine": (10.0, -66.0, "reference"),
                                                "unnormalised": (10.0, -66.0, "none")}.items():
        model = PPO((48,), policy_spec, ADAM, completion_length=8, reward_normalization=normalization,
                    reward_normalization_samples=40, reward_model=None, true_reward=sentiment_reward)
        model.reward_model = SumOfTokensReward(gain, offset)
        assert model.normalizes_rewards == (normalization == "reference")
        torch.manual_seed(0)
        model.reward_stats = model.reference_reward_stats(loader, 40)
        torch.manual_seed(0)  # the same completions again: batches of 16, 16 and the last 8 prompts
        completions = [rollout(reference.model, b["prompt_ids"][:size], 8) for b, size in zip(loader, (16, 16, 8))]
        if normalization == "reference":  # mean 0, std 1 on the reference completions the statistics came from
            normalised = torch.cat([model.score(t, m, 6) for t, m in completions])
            assert normalised.mean().item() == pytest.approx(0, abs=1e-5)
            assert normalised.std().item() == pytest.approx(1, abs=1e-5)
        scores[name] = model.score(tokens, mask, 6)
    # (r − μ)/σ is blind to the Bradley–Terry offset and scale: an affine copy of r_φ scores the same
    torch.testing.assert_close(scores["affine"], scores["raw"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores["unnormalised"], 10 * (tokens.float() * mask).sum(-1) / 100 - 66)


def test_ppo_rejects_prompts_of_different_lengths_and_bad_settings(policy_spec):
    from divlab.lightning_modules.ppo import PPO, equal_length_prompts

    batch = {"prompt_ids": torch.ones(2, 3, dtype=torch.long), "prompt_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}
    with pytest.raises(ValueError, match=r"one token length per batch, got lengths \[2, 3\]"):
        equal_length_prompts(batch)
    with pytest.raises(ValueError, match="unknown model.kl_controller 'pid'; valid choices: adaptive, fixed"):
        PPO((48,), policy_spec, ADAM, kl_controller="pid", reward_model=None, true_reward=sentiment_reward)
    with pytest.raises(ValueError, match="model.kl_coef must be >= 0, got -1"):
        PPO((48,), policy_spec, ADAM, kl_coef=-1, reward_model=None, true_reward=sentiment_reward)
    with pytest.raises(ValueError, match="unknown model.reward_model_readout 'mean'; valid choices: last, sum"):
        PPO((48,), policy_spec, ADAM, reward_model="fit", reward_model_readout="mean")
    with pytest.raises(ValueError, match="unknown model.reward_normalization 'batch'; valid choices: none, reference"):
        PPO((48,), policy_spec, ADAM, reward_normalization="batch", reward_model=None, true_reward=sentiment_reward)
    with pytest.raises(FileNotFoundError, match="model.reward_model='/no/rm.ckpt' is neither fit, bag_of_words nor an "
                                                "existing checkpoint"):
        PPO((48,), policy_spec, ADAM, reward_model="/no/rm.ckpt")
    with pytest.raises(ValueError, match="model.reward_model=null scores PPO with the true reward, and "
                                         "model.true_reward is null"):
        PPO((48,), policy_spec, ADAM, reward_model=None)


@pytest.mark.parametrize("reward_model", ["fit", "bag_of_words"])
def test_a_resumed_ppo_keeps_its_fitted_reward_model_and_kl_coefficient(policy_spec, tmp_path, monkeypatch,
                                                                        reward_model):
    import lightning as L

    from divlab.datamodules.preferences import PreferenceDataModule
    from divlab.lightning_modules import ppo
    from divlab.lightning_modules.bag_of_words import BagOfWordsRewardModel
    from divlab.lightning_modules.ppo import PPO

    reference = load_reference_policy(**policy_spec)
    settings = dict(
        reward_model=reward_model,
        reward_model_epochs=1,
        kl_coef=0.05,
        kl_controller="adaptive",
        kl_target=0.01,
        kl_horizon=100,
        completion_length=6,
        ppo_epochs=1,
        minibatch_size=8,
    )

    def fit(model, max_steps, ckpt_path=None):
        data = PreferenceDataModule(reference.text.encode, records=synthetic_pairs(32), max_length=16,
                                    val_fraction=0.25, batch_size=8)
        trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            default_root_dir=tmp_path)
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
        return trainer

    first = PPO((16,), policy_spec, ADAM, **settings)
    fit(first, max_steps=2).save_checkpoint(tmp_path / "ppo.ckpt")
    fitted = copy.deepcopy(first.reward_model.state_dict())  # a bag of words' vocabulary too (its extra state)
    assert not first.reward_stats.isnan().any()  # the score's normalisation was measured before PPO started
    assert first.kl_control.value != 0.05  # the adaptive controller moved β: its state is worth saving

    refits, start_kl = [], []
    monkeypatch.setattr(ppo, "fit_reward_model", lambda *args: refits.append(args))
    fit_bag_of_words = BagOfWordsRewardModel.fit  # counted, and still fitted: unfitted, it cannot score
    monkeypatch.setattr(BagOfWordsRewardModel, "fit",
                        lambda self, *args: refits.append(args) or fit_bag_of_words(self, *args))
    monkeypatch.setattr(PPO, "reference_reward_stats",
                        lambda self, *args: refits.append(args) or torch.tensor([0.0, 1.0]))
    monkeypatch.setattr(PPO, "on_train_start", lambda self: start_kl.append(self.kl_control.value))
    resumed = PPO((16,), policy_spec, ADAM, **settings)
    fit(resumed, max_steps=3, ckpt_path=tmp_path / "ppo.ckpt")
    assert refits == []  # continued with the saved r_φ (and its normalisation) instead of fitting a new one
    assert torch.equal(resumed.reward_stats, first.reward_stats)
    assert start_kl == [first.kl_control.value]  # β where the first attempt left it
    for name, value in resumed.reward_model.state_dict().items():
        assert torch.equal(value, fitted[name]) if torch.is_tensor(value) else value == fitted[name], name
    fit(PPO((16,), policy_spec, ADAM, **settings), max_steps=1)  # without a checkpoint it fits and normalises
    assert len(refits) == 2


# ---- configs and runs -------------------------------------------------------------------------


def test_reward_model_then_ppo_on_its_scores_run_through_train(train_with, tmp_path):
    _, metrics = train_with("experiment=align_reward_model", *TINY_OVERRIDES, out=tmp_path / "rm")
    assert 0.0 <= metrics["val/reward_model_accuracy"] <= 1.0
    ckpt = tmp_path / "rm" / "checkpoints" / "last.ckpt"
    cfg, metrics = train_with("experiment=align_ppo", f"model.reward_model={ckpt}", "model.ppo_epochs=1",
                              TINY_EVALUATION, *TINY_OVERRIDES, out=tmp_path / "ppo")
    assert cfg.model.reward_model == str(ckpt)
    for key in ("val/true_reward", "val/kl_to_ref", "val/ref_true_reward", "train/score", "train/kl_to_ref"):
        assert key in metrics, key
    record = json.loads((tmp_path / "ppo" / "run.json").read_text())
    assert (record["family"], record["divergence"]) == ("align", "ppo")


def test_a_second_stage_reward_model_runs_through_train_and_loads_without_its_first_stage(train_with, tmp_path):
    from divlab import load_run

    train_with("experiment=align_reward_model", *TINY_OVERRIDES, out=tmp_path / "rm1")
    first = tmp_path / "rm1" / "checkpoints" / "last.ckpt"
    cosine = "model.scheduler={_target_: torch.optim.lr_scheduler.CosineAnnealingLR, _partial_: true, T_max: 4}"
    cfg, _ = train_with("experiment=align_reward_model", f"model.init_from={first}", cosine, *TINY_OVERRIDES,
                        out=tmp_path / "rm2")
    assert cfg.model.init_from == str(first)
    first.unlink()  # the first stage gone: the second's checkpoint holds the weights
    _, _, model = load_run(tmp_path / "rm2")
    saved = torch.load(tmp_path / "rm2" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())


def test_a_job_trains_the_same_after_another_job_of_its_process_loaded_the_reference(train_with, tmp_path):
    """A sweep runs its jobs in one process. π_ref was cached per process, and building it draws from the seeded
    stream (a fresh backbone before the checkpoint's weights), so a later job, finding it cached, trained on other
    draws than the same job run alone (a frontier sweep's PPO β = 0.1 started at KL 0.80 against 0.72 alone).
    Two identical runs in one process, the first loading π_ref afresh as a new process would, end identically."""
    from divlab.lightning_modules.reference_policy import forget_loaded_policies

    forget_loaded_policies()  # this process as new: the first run below builds π_ref
    runs = [train_with("experiment=align_dpo", TINY_EVALUATION, *TINY_OVERRIDES, out=tmp_path / name)[1]
            for name in ("first", "second")]
    first, second = ({k: v for k, v in run.items() if not k.startswith("time/")} for run in runs)
    assert "val/kl_to_ref" in first and first == second


def test_the_job_that_trains_the_reference_policy_draws_as_one_that_finds_it_cached(train_with, tmp_path):
    """The first job of a sweep runs experiment=reference_policy inside its setup step, which seeds every random
    stream for itself; the job then goes on as if it had found the policy cached, as the sweep's later jobs do."""
    data = f"paths.data_dir={tmp_path / 'data'}"  # nothing cached there: the first run trains π_ref
    runs = [train_with("experiment=align_dpo", TINY_EVALUATION, *TINY_OVERRIDES, data, out=tmp_path / name)[1]
            for name in ("trains", "finds")]
    assert list((tmp_path / "data" / "alignment").glob("reference_policy-*/checkpoints/last.ckpt"))
    trains, finds = ({k: v for k, v in run.items() if not k.startswith("time/")} for run in runs)
    assert "val/kl_to_ref" in trains and trains == finds


def test_dpo_trains_on_a_users_jsonl_pairs(train_with, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in PAIRS * 4) + "\n")
    policy = [TINY_POLICY_OVERRIDE]
    _, metrics = train_with("experiment=align_dpo", "data=preferences", f"data.path={path}", "data.val_fraction=0.25",
                            "logger=csv", "debug=tiny", TINY_EVALUATION, *policy, out=tmp_path / "run")
    assert {"val/implicit_reward_accuracy", "val/true_reward"} <= set(metrics)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x" * 60, "chosen": "a", "rejected": "b"}) + "\n" + path.read_text())
    with pytest.raises(Exception, match="record 0: prompt is 60 tokens"):
        train_with("experiment=align_dpo", "data=preferences", f"data.path={bad}", "logger=csv", "debug=tiny",
                   TINY_EVALUATION, *policy, out=tmp_path / "bad")


def test_frontier_sweeps_dpo_ipo_ppo_and_ppo_gt_over_beta_as_the_kl_coefficient(tmp_path):
    from tests.conftest import compose_config
    from tests.test_configs import study_jobs

    jobs = study_jobs("align_frontier")
    methods = {}
    for job in jobs:
        cfg = compose_config(tmp_path, ["experiment=align_frontier", *job])
        if cfg.model._target_.endswith("DPO"):
            method, beta = cfg.model.loss, cfg.model.beta
            assert "reward_model" not in cfg.model
        else:
            method, beta = ("ppo" if cfg.model.reward_model == "fit" else "ppo_gt"), cfg.model.kl_coef
            assert cfg.model.reward_model in ("fit", None) and cfg.data.batch_size == 32
        methods.setdefault(method, []).append(beta)
    assert set(methods) == {"dpo", "ipo", "ppo", "ppo_gt"} and len(jobs) == 16
    assert all(len(set(betas)) == len(betas) >= 3 for betas in methods.values())


def test_a_frontier_member_fits_its_reward_model_then_runs_ppo(train_with, tmp_path):
    _, metrics = train_with("experiment=align_frontier", "model=ppo", "data.batch_size=32", "model.ppo_epochs=1",
                            "model.reward_model_epochs=1", TINY_EVALUATION, *TINY_OVERRIDES)
    assert {"val/true_reward", "val/kl_to_ref", "val/reward_model_accuracy"} <= set(metrics)
    assert json.loads((tmp_path / "run.json").read_text())["divergence"] == "ppo"


# ---- quality (slow): the default task, the default reference policy --------------------------


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [["experiment=align_dpo"], ["experiment=align_ppo", "model.reward_model=null"]],
                         ids=["dpo", "ppo_true_reward"])
def test_alignment_raises_the_true_reward_above_the_reference(train_with, overrides):
    _, metrics = train_with(*overrides, "logger=csv")
    assert metrics["val/true_reward"] > metrics["val/ref_true_reward"] + 0.03
    assert metrics["val/kl_to_ref"] > 0


# ---- the frontier in compare.py ---------------------------------------------------------------


def fake_run(tmp_path, divergence, beta, kl, reward):
    metrics = {"val/true_reward": reward, "val/kl_to_ref": kl, "val/ref_true_reward": 0.02}
    return {"family": "align", "divergence": divergence, "data": "controlled_sentiment", "seed": 0,
            "status": "completed", "metrics": metrics, "config": {"align_beta": beta}, "run_dir": str(tmp_path)}


def test_compare_draws_the_reward_kl_frontier_one_curve_per_method(tmp_path):
    import compare

    runs = [fake_run(tmp_path, d, b, kl, r) for d, b, kl, r in [
        ("dpo", 1.0, 2.0, 0.05), ("dpo", 0.1, 12.0, 0.2), ("ppo", 0.1, 3.0, 0.15), ("ppo", 1.0, 0.5, 0.03)]]
    written = compare.compare(runs, tmp_path / "out")
    assert written["frontier"] == {"align/dpo": 2, "align/ppo": 2}
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0
    rows = (tmp_path / "out" / "frontier.md").read_text().splitlines()
    assert rows[2] == "| reference π_ref | – | 0 | 0.0200 | – |"
    assert rows[3:] == ["| align/dpo | 1 | 2.000 | 0.0500 | 0 |", "| align/dpo | 0.1 | 12.000 | 0.2000 | 0 |",
                        "| align/ppo | 1 | 0.500 | 0.0300 | 0 |", "| align/ppo | 0.1 | 3.000 | 0.1500 | 0 |"]


def test_frontier_keeps_runs_on_other_data_apart_and_beta_within_one_curve(tmp_path):
    from divlab.tracking.frontier import frontier_points, seed_means

    def run(beta, n_prompts, seed, kl, reward):
        record = fake_run(tmp_path, "dpo", beta, kl, reward)
        record["config"] = {"align_beta": beta, "model": {"beta": beta}, "data": {"n_prompts": n_prompts}}
        return {**record, "seed": seed}

    runs = [run(0.1, 2048, 0, 28.0, 0.41), run(0.1, 2048, 1, 30.0, 0.45), run(1.0, 2048, 0, 9.0, 0.22),
            run(0.1, 32768, 0, 58.0, 0.94)]
    means = seed_means(frontier_points(runs))
    assert [(m.method, m.beta, m.n) for m in means] == [
        ("align/dpo (data.n_prompts=2048)", 1.0, 1), ("align/dpo (data.n_prompts=2048)", 0.1, 2),
        ("align/dpo (data.n_prompts=32768)", 0.1, 1)]  # 32,768 prompts: its own curve, not a third seed


def test_frontier_summary_gives_every_methods_reward_at_every_points_kl_by_hand(tmp_path):
    import compare

    runs = [fake_run(tmp_path, d, b, kl, r) for d, b, kl, r in [
        ("dpo", 1.0, 2.0, 0.05), ("dpo", 0.1, 12.0, 0.2), ("ppo", 0.1, 3.0, 0.15), ("ppo", 1.0, 0.5, 0.03)]]
    compare.compare(runs, tmp_path / "out")
    rows = (tmp_path / "out" / "frontier_summary.md").read_text().splitlines()
    table = rows[rows.index("| at the point of | β | KL | align/dpo | align/ppo |"):]
    # π_ref at (0, 0.02). At PPO's KL 0.5: DPO 0.02 + 0.03 · 0.5/2 = 0.0275; at 3: 0.05 + 0.15 · 1/10 = 0.065.
    # At DPO's KL 2: PPO's point (0.5, 0.03) lies under its line from π_ref to (3, 0.15), which gives
    # 0.02 + 0.13 · 2/3 = 0.1067 (through the point: 0.03 + 0.12 · 1.5/2.5 = 0.102), and at its own KL 0.5 that line's
    # 0.02 + 0.13 · 0.5/3 = 0.0417;
    # at 12 PPO's curve has ended.
    assert table[2:6] == [
        "| align/dpo | 1 | 2.000 | 0.0500 | 0.1067 |",
        "| align/dpo | 0.1 | 12.000 | 0.2000 | – |",
        "| align/ppo | 1 | 0.500 | 0.0275 | 0.0417 |",
        "| align/ppo | 0.1 | 3.000 | 0.0650 | 0.1500 |",
    ]


def test_compare_draws_no_frontier_for_runs_without_its_metrics(tmp_path):
    import compare

    run = {**fake_run(tmp_path, "elbo", None, 0, 0), "family": "vae", "metrics": {"val/nll": 1.0}}
    assert compare.compare([run], tmp_path / "out")["frontier"] is None
    assert not (tmp_path / "out" / "frontier.png").exists() and not (tmp_path / "out" / "frontier.md").exists()


def test_a_run_stopped_while_training_the_reference_policy_leaves_its_run_json(train_with, tmp_path, monkeypatch):
    import signal

    import lightning as L

    from divlab.callbacks import progress
    from divlab.lightning_modules.reference_policy import default_policy_checkpoint

    seen = {}

    class CtrlCAfterOneStep(L.Callback):  # stands in for the progress bar: a user's Ctrl-C one step in
        def on_train_batch_end(self, trainer, *args):
            seen["record"] = json.loads((tmp_path / "run" / "run.json").read_text())
            raise KeyboardInterrupt

    monkeypatch.setattr(progress, "progress_bar", lambda every_n_steps: CtrlCAfterOneStep())
    overrides = [*TINY_POLICY, "seed=7"]  # a policy no other test caches
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a graceful Ctrl-C
    try:
        with pytest.raises(SystemExit) as stopped:
            train_with("experiment=align_dpo", *TINY_OVERRIDES, policy_overrides(overrides), out=tmp_path / "run")
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert stopped.value.code == 130
    assert seen["record"]["status"] == "running"  # on disk while the reference policy trained
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "interrupted" and record["attempts"][-1]["status"] == "interrupted"
    assert record["config"]["policy"]["overrides"] == overrides
    data_dir = record["config"]["policy"]["data_dir"]
    cached = default_policy_checkpoint(data_dir, overrides).parent.parent
    assert not cached.exists()  # nothing half-trained cached
    assert not list(cached.parent.glob(f".{cached.name}.build-*"))  # nor left beside it


def test_building_an_alignment_config_never_trains_the_reference_policy(policy_spec, tmp_path):
    spec = {**policy_spec, "data_dir": str(tmp_path)}  # nothing cached here
    with pytest.raises(FileNotFoundError, match="default reference policy is not trained yet"):
        DPO((48,), spec, ADAM)
    assert not (tmp_path / "alignment").exists()


def test_training_the_default_reference_policy_says_so_and_shows_progress(tmp_path, caplog):
    import logging

    from divlab.cli.reference_policy import train_reference_policy_once

    overrides = [*TINY_POLICY, "trainer.max_steps=4", "callbacks.progress_bar.every_n_steps=2"]
    with caplog.at_level(logging.INFO):
        ckpt = train_reference_policy_once(str(tmp_path), overrides)
    messages = [r.getMessage() for r in caplog.records]
    assert ckpt.is_file()
    assert any("training the default reference policy once" in m and str(tmp_path) in m for m in messages)
    assert sum("epoch 0 batch" in m and "train/loss" in m for m in messages) >= 1  # progress while it trains
    record = json.loads((ckpt.parent.parent / "run.json").read_text())  # an ordinary run's record
    assert (record["status"], record["family"]) == ("completed", "ar")
    assert record["config"]["experiment_name"] == "reference_policy"


# ---- distributed and mixed precision ------------------------------------------------------------


@pytest.mark.slow  # 2 spawned processes or bf16 autocast on a tiny policy: ~30 s each on 2 cores
@pytest.mark.parametrize("experiment", ["align_ppo", "align_ppo model.reward_model=bag_of_words", "align_dpo"],
                         ids=["align_ppo", "align_ppo_bag_of_words", "align_dpo"])
@pytest.mark.parametrize("engine", [["trainer=ddp_spawn", "trainer.devices=2"], ["trainer.precision=bf16-mixed"]],
                         ids=["ddp_spawn_2", "bf16_mixed"])
def test_ppo_and_dpo_train_on_two_processes_and_in_bf16(train_with, tmp_path, experiment, engine):
    experiment, *settings = experiment.split()
    train_with(f"experiment={experiment}", *settings, TINY_EVALUATION, *TINY_OVERRIDES, *engine)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] > 0
    assert len(record["attempts"]) == 1  # written by rank 0 once, not once per process
    for key in ("val/true_reward", "val/kl_to_ref", "val/ref_true_reward"):
        assert torch.isfinite(torch.tensor(record["metrics"][key])), key
    if experiment == "align_ppo":  # the reward model was fitted (through Lightning) before the PPO iterations
        assert 0.0 <= record["metrics"]["val/reward_model_accuracy"] <= 1.0
    assert len(list((tmp_path / "samples").glob("val_samples_step*.txt"))) >= 1


def test_frontier_seed_means_and_reward_at_the_common_kl_by_hand(tmp_path):
    from divlab.tracking.frontier import FrontierPoint, common_kl, reward_at_kl, seed_means

    points = [FrontierPoint("align/dpo", 0.1, 4.0, 0.30, 0), FrontierPoint("align/dpo", 0.1, 6.0, 0.50, 1),
              FrontierPoint("align/dpo", 1.0, 1.0, 0.10, 0),
              FrontierPoint("align/ppo", 0.1, 3.0, 0.20, 0), FrontierPoint("align/ppo", 1.0, 1.0, 0.05, 0)]
    means = seed_means(points)
    assert [(m.method, m.beta, m.n) for m in means] == [("align/dpo", 1.0, 1), ("align/dpo", 0.1, 2),
                                                         ("align/ppo", 1.0, 1), ("align/ppo", 0.1, 1)]
    dpo = [m for m in means if m.method == "align/dpo"]
    assert (dpo[1].kl, dpo[1].reward) == pytest.approx((5.0, 0.40))
    assert dpo[1].kl_std == pytest.approx(2 ** 0.5) and dpo[1].reward_std == pytest.approx(0.2 / 2 ** 0.5)
    assert common_kl(means) == pytest.approx(3.0)  # PPO's curve ends at KL 3
    # DPO at KL 3: between (1, 0.10) and (5, 0.40): 0.10 + 0.30 · 2/4 = 0.25; PPO ends there at 0.20.
    assert reward_at_kl(dpo, 3.0, reference=0.0) == pytest.approx(0.25)
    assert reward_at_kl([m for m in means if m.method == "align/ppo"], 3.0) == pytest.approx(0.20)
    # From π_ref (KL 0, reward 0.02) to DPO's first point (1, 0.10): halfway is 0.06; no extrapolation past 5.
    assert reward_at_kl(dpo, 0.5, reference=0.02) == pytest.approx(0.06)
    assert reward_at_kl(dpo, 0.5) is None and reward_at_kl(dpo, 5.5, reference=0.02) is None


def test_compare_prints_the_frontier_summary_with_seed_spread(tmp_path, capsys):
    import compare

    runs = [fake_run(tmp_path, d, b, kl, r) for d, b, kl, r in [
        ("dpo", 1.0, 2.0, 0.05), ("dpo", 0.1, 12.0, 0.2), ("ppo", 0.1, 3.0, 0.15), ("ppo", 1.0, 0.5, 0.03)]]
    runs.append({**fake_run(tmp_path, "dpo", 1.0, 4.0, 0.07), "seed": 1})
    compare.compare(runs, tmp_path / "out")
    summary = (tmp_path / "out" / "frontier_summary.md").read_text()
    assert "| align/dpo | 1 | 2 | 3.000 ± 1.414 | 0.0600 ± 0.0141 |" in summary
    # Common KL 3 (PPO's end): DPO's point (3, 0.06) lies under its line from π_ref (0, 0.02) to (12, 0.2), which
    # passes 0.02 + 0.18 · 3/12 = 0.065 there (a mix of π_ref and that policy); PPO ends at 0.15.
    assert "| align/dpo | 0.0650 |" in summary and "| align/ppo | 0.1500 |" in summary
    assert summary in capsys.readouterr().out
