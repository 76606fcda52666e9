"""The alignment family as modules and runs: reward model, DPO (and IPO/hinge), PPO, their configs.

The objectives' closed forms are tested in test_alignment_objectives.py; here each module takes
real steps on a tiny reference policy (a 1-layer char GPT trained for a few dozen steps, cached
under the data dir like the default policy).
"""
import functools
import json
import os

import pytest
import torch

from divlab.alignment.policy import load_reference_policy, sequence_logprobs
from divlab.datamodules.preferences import collate_preferences, tokenize_record
from divlab.lightning_modules.dpo import DPO

pytestmark = pytest.mark.usefixtures("single_thread")

TINY_POLICY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 48, "batch_size": 16, "steps": 40,
               "lr": 3.0e-3, "seed": 0}
TINY_OVERRIDES = [
    "logger=csv",
    *(f"policy.default.{key}={value}" for key, value in TINY_POLICY.items()),
    "data.n_prompts=48",
    "data.drop_ties=false",
    "data.prompt_length=6",
    "data.completion_length=10",
    "model.evaluation.n_prompts=8",
    "debug=tiny",
]
ADAM = functools.partial(torch.optim.Adam, lr=1e-2)


@pytest.fixture(scope="module")
def policy_spec():
    data_dir = os.environ.get("DIVLAB_DATA_DIR", os.path.expanduser("~/.cache/divlab/data"))  # as configs/paths
    return {"ckpt_path": None, "data_dir": data_dir, "default": TINY_POLICY}


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


def evaluation():
    return {"n_prompts": 4, "prompt_length": 6, "completion_length": 8}


# ---- DPO --------------------------------------------------------------------------------------


@pytest.mark.parametrize("divergence", ["dpo", "ipo", "hinge"])
@pytest.mark.parametrize("pair", PAIRS)
def test_dpo_step_raises_chosen_and_lowers_rejected_logprob(policy_spec, divergence, pair):
    # One plain gradient step on one pair: the change follows the gradient (Adam's first step would not).
    sgd = functools.partial(torch.optim.SGD, lr=1e-3)
    model = DPO((48,), policy_spec, sgd, divergence=divergence, beta=0.5, evaluation=evaluation())
    batch = preference_batch(load_reference_policy(**policy_spec), [pair])
    optimizer = model.configure_optimizers()

    def logps():
        with torch.no_grad():
            return model.policy_logprobs(batch).chunk(2)

    chosen0, rejected0 = logps()
    loss = model.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    chosen1, rejected1 = logps()
    assert chosen1.item() > chosen0.item() and rejected1.item() < rejected0.item()
    # π_ref is untouched (π started equal to it) and its log-probabilities were cached by record
    ref = sequence_logprobs(model.reference, batch["chosen_ids"], batch["chosen_mask"])
    assert torch.allclose(ref, chosen0, atol=1e-5) and set(model._reference_cache) == {0}


@pytest.mark.parametrize("kwargs, fragment", [
    ({"divergence": "kto"}, "'kto'; valid choices: dpo, hinge, ipo"),
    ({"beta": -0.1}, "model.beta must be > 0, got -0.1"),
])
def test_dpo_bad_settings_name_the_value(policy_spec, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        DPO((48,), policy_spec, ADAM, **kwargs)


def test_missing_policy_checkpoint_names_the_path(policy_spec, tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=f"policy.ckpt_path='{missing}' does not exist"):
        DPO((48,), {**policy_spec, "ckpt_path": str(missing)}, ADAM)


def test_align_dpo_experiment_trains_and_logs_the_frontier_metrics(train_with, tmp_path):
    cfg, metrics = train_with("experiment=align_dpo", "model.divergence=ipo", *TINY_OVERRIDES)
    for key in ("val/true_reward", "val/kl_to_ref", "val/ref_true_reward", "val/implicit_reward_margin",
                "val/implicit_reward_accuracy", "train/loss"):
        assert key in metrics, key
    assert metrics["val/kl_to_ref"] != 0  # π moved away from π_ref (3 steps: the 8-sample estimate may be < 0)

    record = json.loads((tmp_path / "run.json").read_text())
    assert (record["family"], record["divergence"], record["data"]) == ("align", "ipo", "controlled_sentiment")
    assert list((tmp_path / "samples").glob("val_samples_step*.txt"))
