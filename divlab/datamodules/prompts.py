"""Prompts cut from a text: prefixes that start at word boundaries, as text or as a tokenizer's ids.

The alignment family's prompts: the controlled task's training prompts (`divlab/alignment/controlled_task.py`)
and the `alignment` callback's fixed evaluation prompts, both from the reference policy's own text.
"""
import math
import re

import torch
from torch import Tensor


def corpus_prefixes(text: str, n: int, length: int, generator: torch.Generator | None = None) -> list[str]:
    """`n` prompts: the first `length` characters after a random word boundary of `text`."""
    starts = [match.start() for match in re.finditer(r"(?<!\S)\S", text[: max(len(text) - length + 1, 0)])]
    if not starts:
        raise ValueError(f"text of {len(text)} characters has no word start {length} characters before its end")
    picks = torch.randint(len(starts), (n,), generator=generator).tolist()
    return [text[starts[i] : starts[i] + length] for i in picks]


def token_prefixes(text, corpus: str, n: int, length: int, seed: int) -> Tensor:
    """[n, length] token ids of prefixes at word starts of `corpus`, tokenised by `text`.

    Cut from `length` characters at character level; a subword tokenizer's prefixes are cut from
    4× its mean characters per token (`text.chars_per_token`), then to `length` tokens.
    """
    ratio = getattr(text, "chars_per_token", 1.0)
    chars = length if ratio == 1 else math.ceil(4 * ratio * length)
    prefixes = corpus_prefixes(corpus, n, chars, torch.Generator().manual_seed(seed))
    prompts = [text.encode(p)[:length] for p in prefixes]
    if min(len(p) for p in prompts) < length:
        raise ValueError(f"a prompt of {chars} characters has fewer than {length} tokens; use a shorter prompt_length")
    return torch.stack(prompts)
