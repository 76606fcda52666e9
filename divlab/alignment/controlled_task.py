"""The controlled sentiment task (`data=controlled_sentiment`): its prompts, its true reward, its labels.

The DPO paper's controlled sentiment generation (Rafailov et al. 2023, §6.1), CPU-sized. The true
reward r*(x, y) of a completion y is the VADER compound sentiment of y's text (Hutto & Gilbert
2014), a rule-based score in [−1, 1] whose lexicon ships inside the `vadersentiment` wheel, so it
is deterministic, needs no download, and can be measured for every policy. Prompts are
`prompt_length`-token prefixes at word starts of the reference policy's text; `samples_per_prompt`
= k completions per prompt are sampled from π_ref (temperature 1, a fixed seed, so every run of a sweep
sees the same pairs), and each of their k(k − 1)/2 pairs is labelled, as the DPO paper labels pairs
among several samples per prefix (its App. C.1); preferences are Bradley–Terry draws on r*:
P(y₁ ≻ y₂) = σ((r*(y₁) − r*(y₂))/temperature). Pairs whose completions have equal true reward (mostly
both 0: most completions of a small character model carry no sentiment word) say nothing about the
reward and their labels are coin flips, so `drop_ties` leaves them out; with k = 4 a prompt yields
several informative pairs where k = 2 yields one at most. The records are cached as JSON under
`<data_dir>/alignment/tasks/`, keyed by the policy checkpoint and the settings, so the runs of a
sweep sample them once. The pairs become a plain `PreferenceDataModule`.
"""
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from divlab.atomic_files import write_text_atomic
from divlab.datamodules.preferences import PreferenceDataModule
from divlab.datamodules.prompts import token_prefixes
from divlab.lightning_modules.reference_policy import load_reference_policy
from divlab.lightning_modules.sequence import decode_completions, rollout
from divlab.validation import check_positive

SampleFn = Callable[[list[str], int], list[list[str]]]


# ---- the true reward and its preference labels ------------------------------------------------


@cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_reward(texts: Sequence[str]) -> Tensor:
    """VADER compound sentiment of each text, float32 [N] in [−1, 1] (0 for neutral or empty text)."""
    if isinstance(texts, str):
        raise TypeError("sentiment_reward takes a list of strings, not one string")
    analyzer = _analyzer()
    return torch.tensor([analyzer.polarity_scores(text)["compound"] for text in texts], dtype=torch.float32)


def bradley_terry_probability(r1: Tensor, r2: Tensor, temperature: float = 1.0) -> Tensor:
    """P(y₁ ≻ y₂) = σ((r₁ − r₂)/temperature)."""
    return torch.sigmoid((r1 - r2) / check_positive("temperature", temperature))


def label_accuracy_ceiling(r1: Tensor, r2: Tensor, temperature: float = 1.0) -> Tensor:
    """The best pair accuracy any reward model can reach on Bradley–Terry labels of true rewards r₁, r₂:
    E[max(p, 1 − p)] = mean σ(|r₁ − r₂|/temperature) (the Bayes-optimal guess is the higher true reward).
    1 − ceiling is the labels' noise: the share of pairs whose label disagrees with the true ranking."""
    return bradley_terry_probability((r1 - r2).abs().float(), torch.zeros(()), temperature).mean()


def bradley_terry_labels(
    r1: Tensor, r2: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Bool [N], True where y₁ ≻ y₂, drawn independently with P = σ((r₁ − r₂)/temperature).

    As temperature → 0 the labels become the deterministic ranking by true reward (ties broken at
    random); large temperatures approach coin flips.
    """
    p = bradley_terry_probability(r1.float(), r2.float(), temperature)
    return torch.rand(p.shape, generator=generator) < p


# ---- the task's pairs -------------------------------------------------------------------------


def check_samples_per_prompt(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"data.samples_per_prompt must be an integer >= 2 (a pair needs two completions), got {k!r}")
    return k


def controlled_preference_records(
    prompts: Sequence[str],
    sample_fn: SampleFn,
    reward_fn: Callable[[list[str]], Tensor] = sentiment_reward,
    temperature: float = 0.1,
    seed: int = 0,
    samples_per_prompt: int = 2,
) -> list[dict]:
    """The controlled task's pairs: k = `samples_per_prompt` completions per prompt from the reference
    policy, each of their k(k − 1)/2 pairs labelled by the Bradley–Terry model on the true reward.

    `sample_fn(prompts, k)` returns, for each prompt, a list of k completion strings (the prompt
    not included); `reward_fn` scores completions. Each record holds prompt/chosen/rejected and
    the true rewards `chosen_reward`/`rejected_reward`; a prompt's records are consecutive, its pairs
    (i, j), i < j, in order.
    """
    k = check_samples_per_prompt(samples_per_prompt)
    prompts = list(prompts)
    completions = sample_fn(prompts, k)
    if len(completions) != len(prompts) or any(len(group) != k for group in completions):
        raise ValueError(f"sample_fn(prompts, {k}) must return {len(prompts)} lists of {k} completions")
    rewards = reward_fn([text for group in completions for text in group]).view(len(prompts), k)
    pairs = list(itertools.combinations(range(k), 2))
    first, second = [i for i, _ in pairs], [j for _, j in pairs]
    first_wins = bradley_terry_labels(
        rewards[:, first].flatten(), rewards[:, second].flatten(), temperature, torch.Generator().manual_seed(seed)
    ).view(len(prompts), len(pairs)).tolist()
    records = []
    for p, prompt in enumerate(prompts):
        for (i, j), i_wins in zip(pairs, first_wins[p]):
            winner, loser = (i, j) if i_wins else (j, i)
            records.append(
                {
                    "prompt": prompt,
                    "chosen": completions[p][winner],
                    "rejected": completions[p][loser],
                    "chosen_reward": rewards[p, winner].item(),
                    "rejected_reward": rewards[p, loser].item(),
                }
            )
    return records


def controlled_sentiment(
    policy: dict,
    n_prompts: int = 2048,
    prompt_length: int = 8,
    completion_length: int = 32,
    samples_per_prompt: int = 2,
    label_temperature: float = 0.1,
    drop_ties: bool = True,
    seed: int = 0,
    **datamodule_kwargs,
) -> PreferenceDataModule:
    """The task's pairs, tokenised by the reference policy's tokenizer; `datamodule_kwargs` go to
    PreferenceDataModule."""
    for key in ("n_prompts", "prompt_length", "completion_length"):
        check_positive(f"data.{key}", locals()[key])
    check_samples_per_prompt(samples_per_prompt)
    reference = load_reference_policy(**policy)
    check_fits_context(prompt_length, completion_length, reference.model.block_size)
    path = reference.ckpt_path  # a file or directory, or a Hugging Face Hub name (policy.hf_model)
    mtime = os.path.getmtime(path) if os.path.exists(path) else None
    settings = {"policy": path, "policy_mtime": mtime,
                "n_prompts": n_prompts, "prompt_length": prompt_length, "completion_length": completion_length,
                "label_temperature": label_temperature, "seed": seed}
    if samples_per_prompt != 2:  # the key of a two-sample task stays what it was, so its cache is reused
        settings["samples_per_prompt"] = samples_per_prompt
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    data_dir = Path(policy.get("data_dir") or "~/.cache/divlab/data").expanduser()
    cache = data_dir / "alignment" / "tasks" / f"controlled_sentiment-{key}.json"
    if cache.is_file():
        records = json.loads(cache.read_text())
    else:
        records = sample_records(reference, n_prompts, prompt_length, completion_length, label_temperature, seed,
                                 samples_per_prompt)
        write_text_atomic(cache, json.dumps(records))  # concurrent runs write the same records
    if drop_ties:
        records = [r for r in records if r["chosen_reward"] != r["rejected_reward"]]
    datamodule_kwargs.setdefault("max_length", prompt_length + completion_length)
    datamodule_kwargs.setdefault("name", "controlled_sentiment")
    text = reference.text
    return PreferenceDataModule(text.encode, records=records, decode=text.decode, **datamodule_kwargs)


def check_fits_context(prompt_length: int, completion_length: int, block_size: int) -> None:
    """A prompt and its completion must fit the policy's context after a BOS token: the reward model and PPO's
    value head read [BOS, prompt, completion] (`sequence.read_sequence`)."""
    if prompt_length + completion_length > block_size - 1:
        raise ValueError(
            f"data.prompt_length + data.completion_length = {prompt_length} + {completion_length} = "
            f"{prompt_length + completion_length} exceeds {block_size - 1}, the reference policy's block_size "
            f"({block_size}) less its BOS token; shorten data.completion_length to at most "
            f"{block_size - 1 - prompt_length}"
        )


# Sequences per rollout batch when sampling the task: its KV cache grows with the batch (~0.8 GB at 16,384 for
# the default policy; all 262,144 sequences of 65,536 prompts × 4 at once exhausted 24 GB).
ROLLOUT_CHUNK = 16384


def sample_records(reference, n_prompts: int, prompt_length: int, completion_length: int,
                   label_temperature: float, seed: int, samples_per_prompt: int = 2) -> list[dict]:
    """Prompts from the policy's training text, `samples_per_prompt` completions each from π_ref, Bradley–Terry
    labels on every pair of them."""
    text = reference.text
    corpus = text.decode(text.tokens["train"][:1_000_000])
    prompts = [text.decode(ids) for ids in token_prefixes(text, corpus, n_prompts, prompt_length, seed)]

    def sample_completions(prompts: list[str], n: int) -> list[list[str]]:
        ids = torch.stack([text.encode(p) for p in prompts]).repeat_interleave(n, 0)
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # one stream through the chunks: up to one chunk, the draws of a single batch
            tokens = torch.cat([rollout(reference.model, chunk, completion_length)[0]
                                for chunk in ids.split(ROLLOUT_CHUNK)])
        completions = decode_completions(text.decode, tokens, ids.shape[1])
        return [completions[i * n:(i + 1) * n] for i in range(len(prompts))]

    return controlled_preference_records(prompts, sample_completions, temperature=label_temperature, seed=seed,
                                         samples_per_prompt=samples_per_prompt)
