"""Preference pairs (x, y_w ≻ y_l) for the alignment family: pure data, from a file or from records.

A record is `{"prompt": x, "chosen": y_w, "rejected": y_l}` (the common layout of preference
datasets), read from a JSON list or a JSONL file (one record per line), or given in memory (the
controlled task's pairs, `alignment/controlled_task.py`).

Records are tokenised with the policy's `encode` (str -> token ids: a list, array or 1-D tensor)
as prompt + completion, truncated to `max_length` tokens (at most the policy's context). A batch is
a dict of tensors:

- `chosen_ids`, `rejected_ids` [B, L]: prompt + completion tokens, right-padded with `pad_id` to
  one length L shared by chosen and rejected (so a module can run them in one forward pass);
- `chosen_mask`, `rejected_mask` [B, L]: 1 on completion tokens only, 0 on prompt and padding —
  with per-token log-probabilities aligned to the ids (the `ar` family's `token_log_likelihoods`),
  log π(y|x) = Σ_t mask·logp (`lightning_modules/sequence.py: sequence_log_prob`);
- `prompt_ids`, `prompt_mask` [B, P]: the prompt alone, right-padded, mask 1 on prompt tokens;
- `index` [B]: the record's position in the full record list (to look up cached reference
  log-probabilities, which are fixed when the data is).
"""
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from divlab.datamodules.tensor_data import evaluation_loader_generator
from divlab.validation import check_positive

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")

Encode = Callable[[str], list[int]]


def load_preference_records(path: str | Path) -> list[dict]:
    """Records from a `.json` file (a list of objects) or a `.jsonl` file (one object per line)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: preference file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {line_no} is not valid JSON ({err.msg})") from None
    elif path.suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of {{prompt, chosen, rejected}} records")
    else:
        raise ValueError(f"{path}: expected a .json or .jsonl file of {{prompt, chosen, rejected}} records")
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def validate_record(record, source: str, index: int) -> None:
    """ValueError naming `source` and `index` unless `record` has non-empty string prompt/chosen/rejected."""
    where = f"{source}: record {index}"
    if not isinstance(record, dict):
        keys = ", ".join(PREFERENCE_KEYS)
        raise ValueError(f"{where}: expected an object with keys {keys}, got {type(record).__name__}")
    missing = [key for key in PREFERENCE_KEYS if key not in record]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    for key in PREFERENCE_KEYS:
        value = record[key]
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
        if not value:
            raise ValueError(f"{where}: {key!r} is empty")


def tokenize_record(record: dict, encode: Encode, max_length: int, source: str, index: int) -> dict[str, list[int]]:
    """Token ids of the prompt and of prompt + chosen / prompt + rejected, truncated to `max_length`.

    The prompt must leave room for at least one completion token: it is never truncated, since a
    truncated prompt would be a different question.
    """
    validate_record(record, source, index)
    where = f"{source}: record {index}"
    try:
        prompt, chosen, rejected = (
            torch.as_tensor(encode(record[key]), dtype=torch.long).tolist() for key in PREFERENCE_KEYS
        )
    except Exception as err:
        raise ValueError(f"{where}: the tokenizer failed ({err})") from err
    if len(prompt) >= max_length:
        raise ValueError(
            f"{where}: prompt is {len(prompt)} tokens, leaving no room for the completion within "
            f"max_length={max_length} (the policy's context)"
        )
    for key, ids in (("chosen", chosen), ("rejected", rejected)):
        if not ids:
            raise ValueError(f"{where}: {key!r} encodes to no tokens")
    return {
        "prompt": prompt,
        "chosen": (prompt + chosen)[:max_length],
        "rejected": (prompt + rejected)[:max_length],
    }


def _pad(rows: Sequence[list[int]], length: int, pad_id: int) -> Tensor:
    return torch.tensor([row + [pad_id] * (length - len(row)) for row in rows], dtype=torch.long)


def _span_mask(starts: Sequence[int], ends: Sequence[int], length: int) -> Tensor:
    """[B, length] with 1 on positions start ≤ t < end of each row."""
    positions = torch.arange(length)
    return ((positions >= torch.tensor(starts)[:, None]) & (positions < torch.tensor(ends)[:, None])).long()


def collate_preferences(examples: Sequence[dict], pad_id: int = 0) -> dict[str, Tensor]:
    """Pad tokenised examples into the batch layout described in the module docstring."""
    prompt_lens = [len(ex["prompt"]) for ex in examples]
    length = max(len(ex[key]) for ex in examples for key in ("chosen", "rejected"))
    batch = {
        "prompt_ids": _pad([ex["prompt"] for ex in examples], max(prompt_lens), pad_id),
        "prompt_mask": _span_mask([0] * len(examples), prompt_lens, max(prompt_lens)),
        "index": torch.tensor([ex["index"] for ex in examples], dtype=torch.long),
    }
    for key in ("chosen", "rejected"):
        batch[f"{key}_ids"] = _pad([ex[key] for ex in examples], length, pad_id)
        batch[f"{key}_mask"] = _span_mask(prompt_lens, [len(ex[key]) for ex in examples], length)
    return batch


def split_by_prompt(records: Sequence[dict], val_fraction: float, seed: int, source: str = "records") -> set[int]:
    """Indices of the validation records: whole prompts, in an order shuffled by `seed`, until at least
    max(1, ⌊val_fraction · N⌋) records; at least one prompt is left for training."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record["prompt"], []).append(index)
    if len(groups) < 2:
        raise ValueError(
            f"{source}: need at least 2 distinct prompts for a train/val split by prompt, got {len(groups)}"
        )
    prompts = list(groups)
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed)).tolist()
    target = max(1, math.floor(val_fraction * len(records)))
    val: set[int] = set()
    for i in order[:-1]:
        if len(val) >= target:
            break
        val.update(groups[prompts[i]])
    return val


class PreferenceDataModule(L.LightningDataModule):
    """Train/val preference pairs from `path` (JSON/JSONL) or in-memory `records`, tokenised by `encode`.

    The split is by prompt, shuffled with `data_seed`: all pairs of a prompt fall on the same side (several
    pairs per prompt are common, and a held-out pair whose prompt and completions were trained on measures
    memory, not generalisation); whole prompts go to validation until it holds `val_fraction` of the records
    (at least one). `max_length` is the policy's context length in tokens.
    """

    kind = "preference"

    def __init__(
        self,
        encode: Encode,
        path: str | None = None,
        records: Sequence[dict] | None = None,
        decode: Callable[[list[int]], str] | None = None,
        max_length: int = 64,
        val_fraction: float = 0.1,
        batch_size: int = 16,
        pad_id: int = 0,
        data_seed: int = 1234,
        num_workers: int = 0,
        name: str | None = None,
    ):
        super().__init__()
        if (path is None) == (records is None):
            raise ValueError("give exactly one of data.path (a JSON/JSONL preference file) and records")
        if not callable(encode):
            raise ValueError("encode must be the policy tokenizer's callable str -> list[int]")
        for key in ("max_length", "batch_size"):
            check_positive(f"data.{key}", locals()[key])
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction!r}")
        self.save_hyperparameters(ignore=["encode", "decode", "records"])
        self.encode, self.decode = encode, decode
        self.records = None if records is None else list(records)
        self.name = name or (Path(path).stem if path is not None else "preferences")
        self.sample_shape = (max_length,)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "splits"):
            return
        path = self.hparams.path
        source = str(path) if path is not None else "records"
        records = load_preference_records(path) if path is not None else self.records
        if len(records) < 2:
            raise ValueError(f"{source}: need at least 2 records for a train/val split, got {len(records)}")
        examples = []
        for index, record in enumerate(records):
            example = tokenize_record(record, self.encode, self.hparams.max_length, source, index)
            examples.append({**example, "index": index})
        val = split_by_prompt(records, self.hparams.val_fraction, self.hparams.data_seed, source)
        self.splits = {
            "train": [ex for i, ex in enumerate(examples) if i not in val],
            "val": [ex for i, ex in enumerate(examples) if i in val],
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.splits[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            generator=evaluation_loader_generator(shuffle),
            num_workers=self.hparams.num_workers,
            collate_fn=self._collate,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def _collate(self, examples: list[dict]) -> dict[str, Tensor]:
        return collate_preferences(examples, self.hparams.pad_id)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
