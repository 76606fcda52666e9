"""The interface every sequence backbone implements (GPT here; S4D and Mamba plug into the same slot).

A backbone maps token ids to next-token logits, and can also run one token at a time with a
cache (a transformer's keys and values, an SSM's recurrent state), so that generating L tokens
costs L steps instead of recomputing the whole prefix L times. The family (`ar`) owns the
begin-of-sequence convention and the sampling loop; the backbone only sees token ids in
`[0, vocab_size]`, where id `vocab_size` is the begin-of-sequence token (an input only: logits
cover the `vocab_size` real tokens).
"""
from typing import Any, Protocol

import torch


class SequenceBackbone(Protocol):
    vocab_size: int
    # Longest input the backbone accepts (learned positions); None when unbounded (recurrent state).
    context_size: int | None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] → logits [B, T, vocab_size]; position t sees tokens ≤ t only (causal)."""

    def prefill(self, tokens: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Run a prefix tokens [B, T]: logits of its last position [B, vocab_size] and the cache after it."""

    def step(self, token: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """One more token [B] after the prefix `cache` holds: logits [B, vocab_size] and the updated cache.

        Equal (up to float error) to `forward` on the whole prefix, at O(1) network calls per token.
        """

    def cache_length(self, cache: Any) -> int:
        """How many tokens `cache` holds (to know when a bounded context is full)."""
