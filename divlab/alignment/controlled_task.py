"""The controlled sentiment task as a PreferenceDataModule (`data=controlled_sentiment`).

Prompts are `prompt_length`-token prefixes at word starts of the reference policy's training text;
two completions per prompt are sampled from π_ref (temperature 1, a fixed seed, so every run of a
sweep sees the same pairs); preferences are Bradley–Terry draws on the VADER true reward
(`true_reward.py`). Pairs whose completions have equal true reward (mostly both 0: most short
completions of a small character model carry no sentiment word) say nothing about the reward and
their labels are coin flips, so `drop_ties` leaves them out. The records are cached as JSON under
`<data_dir>/alignment/tasks/`, keyed by the policy checkpoint and the settings, so the runs of a
sweep sample them once.
"""
import hashlib
import json
import os
from pathlib import Path

import torch

from divlab.alignment.policy import decode_completions, load_reference_policy, rollout, token_prefixes
from divlab.datamodules.preferences import PreferenceDataModule, controlled_preference_records
from divlab.validation import check_positive


def controlled_sentiment(
    policy: dict,
    n_prompts: int = 2048,
    prompt_length: int = 8,
    completion_length: int = 32,
    label_temperature: float = 0.1,
    drop_ties: bool = True,
    seed: int = 0,
    **datamodule_kwargs,
) -> PreferenceDataModule:
    """The task's pairs, tokenised by the reference policy's tokenizer; `datamodule_kwargs` go to PreferenceDataModule."""
    for key in ("n_prompts", "prompt_length", "completion_length"):
        check_positive(f"data.{key}", locals()[key])
    reference = load_reference_policy(**policy)
    path = reference.ckpt_path  # a file or directory, or a Hugging Face Hub name (policy.hf_model)
    mtime = os.path.getmtime(path) if os.path.exists(path) else None
    settings = {"policy": path, "policy_mtime": mtime,
                "n_prompts": n_prompts, "prompt_length": prompt_length, "completion_length": completion_length,
                "label_temperature": label_temperature, "seed": seed}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    data_dir = Path(policy.get("data_dir") or "~/.cache/divlab/data").expanduser()
    cache = data_dir / "alignment" / "tasks" / f"controlled_sentiment-{key}.json"
    if cache.is_file():
        records = json.loads(cache.read_text())
    else:
        records = sample_records(reference, n_prompts, prompt_length, completion_length, label_temperature, seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(records))
        tmp.replace(cache)  # atomic: concurrent runs agree
    if drop_ties:
        records = [r for r in records if r["chosen_reward"] != r["rejected_reward"]]
    datamodule_kwargs.setdefault("max_length", prompt_length + completion_length)
    datamodule_kwargs.setdefault("name", "controlled_sentiment")
    text = reference.text
    return PreferenceDataModule(text.encode, records=records, decode=text.decode, **datamodule_kwargs)


def sample_records(reference, n_prompts: int, prompt_length: int, completion_length: int,
                   label_temperature: float, seed: int) -> list[dict]:
    """Prompts from the policy's training text, two completions each from π_ref, Bradley–Terry labels."""
    text = reference.text
    corpus = text.decode(text.tokens["train"][:1_000_000])
    prompts = [text.decode(ids) for ids in token_prefixes(text, corpus, n_prompts, prompt_length, seed)]

    def sample_pairs(prompts: list[str], n: int) -> list[list[str]]:
        ids = torch.stack([text.encode(p) for p in prompts]).repeat_interleave(n, 0)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            tokens, _ = rollout(reference.model, ids, completion_length)
        completions = decode_completions(text.decode, tokens, ids.shape[1])
        return [completions[i * n:(i + 1) * n] for i in range(len(prompts))]

    return controlled_preference_records(prompts, sample_pairs, temperature=label_temperature, seed=seed)
