import json
import math

import pytest
import torch

from divlab.alignment.controlled_task import (
    bradley_terry_labels,
    bradley_terry_probability,
    controlled_preference_records,
    label_accuracy_ceiling,
    sentiment_reward,
)
from divlab.datamodules.preferences import (
    PreferenceDataModule,
    collate_preferences,
    load_preference_records,
    tokenize_record,
)
from divlab.datamodules.prompts import corpus_prefixes

pytestmark = pytest.mark.usefixtures("single_thread")

RECORDS = [
    {"prompt": "Q: tea? A:", "chosen": " yes, gladly", "rejected": " no"},
    {"prompt": "Hi", "chosen": " hello there", "rejected": " go away now!"},
    {"prompt": "2+2=", "chosen": "4", "rejected": "5, surely"},
    {"prompt": "Say", "chosen": " thanks", "rejected": " nothing"},
]


def encode(text: str) -> list[int]:
    """Character-level stand-in for the policy tokenizer: one token per character, ids ≥ 1."""
    return [1 + ord(ch) % 127 for ch in text]


def _write(tmp_path, name, records):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        path.write_text(json.dumps(records))
    return path


# ---- true reward -----------------------------------------------------------------------------


def test_sentiment_reward_ranks_positive_above_negative_and_is_deterministic():
    texts = ["What a wonderful, happy day; I love it!", "This is terrible, I hate it and feel awful.", "the chair"]
    rewards = sentiment_reward(texts)
    assert rewards.shape == (3,) and rewards.dtype == torch.float32
    assert rewards[0] > 0.5 > -0.5 > rewards[1] and rewards[2] == 0.0
    assert torch.equal(rewards, sentiment_reward(list(reversed(texts))).flip(0))
    with pytest.raises(TypeError, match="list of strings"):
        sentiment_reward("one string")


def test_bradley_terry_labels_follow_the_logistic_probability():
    n, temperature = 20_000, 0.5
    r1 = torch.tensor([-1.0, 0.0, 0.3, 1.0]).repeat_interleave(n)
    r2 = torch.zeros_like(r1)
    labels = bradley_terry_labels(r1, r2, temperature, torch.Generator().manual_seed(0))
    frequency = labels.view(4, n).float().mean(1)
    p = torch.sigmoid(torch.tensor([-1.0, 0.0, 0.3, 1.0]) / temperature)
    se = (p * (1 - p) / n).sqrt()
    assert ((frequency - p).abs() < 4 * se).all(), (frequency, p)
    assert torch.equal(labels, bradley_terry_labels(r1, r2, temperature, torch.Generator().manual_seed(0)))
    assert bradley_terry_probability(torch.tensor(1.0), torch.tensor(0.0), 2.0).item() == pytest.approx(
        1 / (1 + math.exp(-0.5))
    )


# ---- user files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pairs.json", "pairs.jsonl"])
def test_preference_file_batches_mask_the_prompt_and_padding(tmp_path, name):
    path = _write(tmp_path, name, RECORDS)
    assert load_preference_records(path) == RECORDS
    data = PreferenceDataModule(encode, path=str(path), max_length=16, val_fraction=0.25, batch_size=4)
    data.setup()
    assert data.kind == "preference" and data.name == "pairs"
    assert len(data.splits["train"]) == 3 and len(data.splits["val"]) == 1
    batch = next(iter(data.train_dataloader()))
    for i, index in enumerate(batch["index"].tolist()):
        record = RECORDS[index]
        prompt = encode(record["prompt"])
        assert batch["prompt_ids"][i, : len(prompt)].tolist() == prompt
        assert batch["prompt_mask"][i].sum().item() == len(prompt)
        for key in ("chosen", "rejected"):
            ids, mask = batch[f"{key}_ids"][i], batch[f"{key}_mask"][i]
            full = (prompt + encode(record[key]))[:16]
            assert ids[: len(full)].tolist() == full and (ids[len(full) :] == 0).all()
            # mask: 1 exactly on the completion tokens, 0 on prompt and padding
            assert mask.tolist() == [0] * len(prompt) + [1] * (len(full) - len(prompt)) + [0] * (len(ids) - len(full))
    assert batch["chosen_ids"].shape == batch["rejected_ids"].shape == batch["chosen_mask"].shape


def test_encode_may_return_a_tensor_like_the_text_datamodule():
    example = tokenize_record(RECORDS[0], lambda text: torch.tensor(encode(text)), 32, "records", 0)
    assert example == tokenize_record(RECORDS[0], encode, 32, "records", 0)
    assert all(type(token) is int for token in example["chosen"])


def test_collate_truncates_completions_to_the_context():
    example = tokenize_record({"prompt": "abc", "chosen": "x" * 20, "rejected": "y"}, encode, 8, "records", 0)
    batch = collate_preferences([{**example, "index": 0}])
    assert batch["chosen_ids"].shape == (1, 8)
    assert batch["chosen_mask"].tolist() == [[0, 0, 0, 1, 1, 1, 1, 1]]
    assert batch["rejected_mask"].tolist() == [[0, 0, 0, 1, 0, 0, 0, 0]]


GOOD = {"prompt": "p", "chosen": "c", "rejected": "r"}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"prompt": "p", "chosen": "c"}, "missing key\\(s\\) rejected"),
        ({**GOOD, "chosen": ""}, "'chosen' is empty"),
        ({**GOOD, "prompt": ""}, "'prompt' is empty"),
        ({**GOOD, "rejected": 3}, "'rejected' must be a string, got int"),
        ({**GOOD, "prompt": None}, "'prompt' must be a string, got NoneType"),
        ({**GOOD, "prompt": "x" * 16}, "prompt is 16 tokens, leaving no room .* max_length=16"),
        (["p", "c", "r"], "expected an object"),
    ],
)
@pytest.mark.parametrize("name", ["bad.json", "bad.jsonl"])
def test_bad_records_name_the_file_and_record(tmp_path, name, bad, message):
    path = _write(tmp_path, name, [GOOD, bad, GOOD])
    data = PreferenceDataModule(encode, path=str(path), max_length=16)
    with pytest.raises(ValueError, match=f"bad.jsonl?: record 1: {message}"):
        data.setup()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("broken.jsonl", '{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": \n', "line 2 is not valid JSON"),
        ("broken.json", "[{", "not valid JSON"),
        ("object.json", json.dumps(GOOD), "expected a JSON list"),
        ("empty.jsonl", "\n", "no records"),
        ("pairs.csv", "prompt,chosen,rejected", "expected a .json or .jsonl file"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=f"{name}: .*{message}"):
        PreferenceDataModule(encode, path=str(path)).setup()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="missing.json: preference file not found"):
        load_preference_records(tmp_path / "missing.json")


def test_tokenizer_failure_names_the_record():
    def strict_encode(text):
        if "!" in text:
            raise KeyError("!")
        return encode(text)

    with pytest.raises(ValueError, match="records: record 1: the tokenizer failed"):
        PreferenceDataModule(strict_encode, records=RECORDS).setup()


def test_datamodule_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one of data.path"):
        PreferenceDataModule(encode)
    with pytest.raises(ValueError, match="val_fraction"):
        PreferenceDataModule(encode, records=RECORDS, val_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 records"):
        PreferenceDataModule(encode, records=RECORDS[:1]).setup()


# ---- controlled task -------------------------------------------------------------------------

POSITIVE = [" and I love this wonderful gift", " a happy, lovely, great day"]
NEGATIVE = [" and I hate this awful, terrible mess", " a sad, horrible, bad day"]


def fake_sampler(prompts, n):
    """Deterministic stand-in for the reference policy: one positive and one negative completion,
    in an order that alternates so labels cannot come from position alone."""
    assert n == 2
    pairs = []
    for i, _ in enumerate(prompts):
        pos, neg = POSITIVE[i % 2], NEGATIVE[i % 2]
        pairs.append([pos, neg] if i % 3 else [neg, pos])
    return pairs


def test_controlled_task_prefers_the_higher_true_reward():
    corpus = "The king spoke. Then the queen answered him, and all was quiet. " * 4
    prompts = corpus_prefixes(corpus, 40, 12, torch.Generator().manual_seed(0))
    assert len(prompts) == 40 and all(len(p) == 12 and p[0] != " " for p in prompts)
    records = controlled_preference_records(prompts, fake_sampler, temperature=0.05, seed=0)
    assert [r["prompt"] for r in records] == prompts
    # σ((r_pos − r_neg)/0.05) ≈ 1 with a reward gap > 1: every label follows the true reward.
    assert all(r["chosen"] in POSITIVE and r["rejected"] in NEGATIVE for r in records)
    assert all(r["chosen_reward"] > r["rejected_reward"] for r in records)
    # Near-coin-flip labels at a huge temperature, reproducible from the seed.
    noisy = controlled_preference_records(prompts, fake_sampler, temperature=100.0, seed=1)
    assert 5 < sum(r["chosen"] in POSITIVE for r in noisy) < 35
    assert noisy == controlled_preference_records(prompts, fake_sampler, temperature=100.0, seed=1)
    # The records feed the same datamodule as a user's file.
    data = PreferenceDataModule(encode, records=records, max_length=64, batch_size=8, name="controlled_sentiment")
    data.setup()
    batch = next(iter(data.val_dataloader()))
    assert batch["chosen_ids"].shape[0] >= 4 and (batch["chosen_mask"].sum(1) > 0).all()


WORDS = {" love": 0.6369, " hate": -0.5719, " the": 0.0, " good": 0.4404}  # VADER compound of each word alone


def test_several_samples_per_prompt_label_every_pair_of_them():
    prompts = ["To be", "Or not"]
    completions = {"To be": list(WORDS), "Or not": list(WORDS)[::-1]}
    records = controlled_preference_records(prompts, lambda ps, n: [completions[p][:n] for p in ps],
                                            temperature=1e-3, seed=0, samples_per_prompt=4)
    assert len(records) == 2 * 6  # C(4, 2) pairs per prompt, a prompt's pairs consecutive
    assert [r["prompt"] for r in records] == ["To be"] * 6 + ["Or not"] * 6
    for prompt in prompts:  # every unordered pair once, its true rewards VADER's, the label the higher reward
        pairs = [(r["chosen"], r["rejected"]) for r in records if r["prompt"] == prompt]
        assert {frozenset(p) for p in pairs} == {frozenset((a, b)) for a in WORDS for b in WORDS if a < b}
        for r in (r for r in records if r["prompt"] == prompt):
            assert r["chosen_reward"] == pytest.approx(WORDS[r["chosen"]], abs=1e-4)
            assert r["rejected_reward"] == pytest.approx(WORDS[r["rejected"]], abs=1e-4)
            assert r["chosen_reward"] >= r["rejected_reward"]
    with pytest.raises(ValueError, match="samples_per_prompt must be an integer >= 2.*got 1"):
        controlled_preference_records(prompts, lambda ps, n: [["x"] * n for _ in ps], samples_per_prompt=1)


def test_the_split_keeps_each_prompt_on_one_side():
    # 30 prompts with 1..6 pairs each: no prompt's pairs may straddle train and val.
    records = [
        {"prompt": f"p{i:02d}", "chosen": f"c{j}", "rejected": f"r{j}"} for i in range(30) for j in range(i % 6 + 1)
    ]
    data = PreferenceDataModule(encode, records=records, max_length=16, val_fraction=0.2, data_seed=3)
    data.setup()
    decode = lambda ids: "".join(chr(i - 1) for i in ids)  # noqa: E731  (inverts encode on ASCII)
    prompts = {split: {decode(ex["prompt"]) for ex in data.splits[split]} for split in ("train", "val")}
    assert not prompts["train"] & prompts["val"] and prompts["train"] | prompts["val"] == {r["prompt"] for r in records}
    n_val = len(data.splits["val"])
    assert len(data.splits["train"]) + n_val == len(records)
    assert math.floor(0.2 * len(records)) <= n_val < math.floor(0.2 * len(records)) + 6  # whole prompts, then stop
    with pytest.raises(ValueError, match="at least 2 distinct prompts"):
        PreferenceDataModule(encode, records=[records[0]] * 3).setup()


def test_corpus_prefixes_start_at_words_and_fit_the_text():
    text = "Hello  world, foo\nbar baz"
    prompts = corpus_prefixes(text, 50, 5, torch.Generator().manual_seed(0))
    assert set(prompts) == {"Hello", "world", "foo\nb", "bar b"}
    with pytest.raises(ValueError, match="no word start"):
        corpus_prefixes("abc", 1, 6)


def test_controlled_task_checks_the_sampler_output():
    with pytest.raises(ValueError, match="must return 2 lists of 2 completions"):
        controlled_preference_records(["a", "b"], lambda prompts, n: [["x"]] * len(prompts))


def test_the_accuracy_ceiling_of_bradley_terry_labels_is_the_mean_of_max_p_and_1_minus_p():
    # Reward gaps 0.1 and −0.2 at temperature 0.1: P(label = true ranking) = σ(1) and σ(2), whichever pair is first.
    ceiling = label_accuracy_ceiling(torch.tensor([0.3, 0.0]), torch.tensor([0.2, 0.2]), temperature=0.1)
    expected = (1 / (1 + math.exp(-1)) + 1 / (1 + math.exp(-2))) / 2  # 0.8338
    assert ceiling.item() == pytest.approx(expected, rel=1e-6)
    assert label_accuracy_ceiling(torch.zeros(3), torch.zeros(3)).item() == 0.5  # ties: coin flips
    # The ceiling is what the true reward itself scores on labels drawn from it (Monte Carlo, 200k pairs).
    generator = torch.Generator().manual_seed(0)
    r1, r2 = torch.rand(200_000, generator=generator), torch.rand(200_000, generator=generator)
    labels = bradley_terry_labels(r1, r2, temperature=0.1, generator=generator)
    assert ((r1 > r2) == labels).float().mean().item() == pytest.approx(label_accuracy_ceiling(r1, r2, 0.1).item(),
                                                                        abs=3e-3)


def test_the_bag_of_words_baseline_learns_which_words_win():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from preference_signal import bag_of_words_accuracy

    # "good" beats "bad" whatever the filler; the held-out pairs reuse the words in new sentences.
    fillers = ["the king", "a horse", "my lord", "thy sword", "our queen", "his crown", "her hand", "that day"]
    records = [{"prompt": f"p{i}", "chosen": f"{fillers[i % 8]} is good", "rejected": f"{fillers[(i + 3) % 8]} is bad"}
               for i in range(40)]
    records = [r if i % 2 else {**r, "chosen": r["chosen"] + " indeed"} for i, r in enumerate(records)]
    train_accuracy, val_accuracy = bag_of_words_accuracy(records, val=set(range(30, 40)))
    assert train_accuracy == 1.0 and val_accuracy == 1.0
    flipped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in records]  # a sign error would score 0
    assert bag_of_words_accuracy(flipped, val=set(range(30, 40))) == (1.0, 1.0)
