"""The language-model shell shared by the state-space backbones (s4d, mamba).

Token embedding → residual blocks around a sequence mixer (plus an optional GELU MLP) → final
LayerNorm → LM head tied to the embedding. Implements `SequenceBackbone`
(networks/sequence_backbone.py), with the cache being each layer's fixed-size recurrent state: O(1)
work and memory per generated token, at any length (`context_size = None`).

A mixer maps [B, T, C] → [B, T, C] causally, and offers `prefill(x) -> (y, state)` (the state after
the last position) and `step(x_t, state) -> (y_t, state)`.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RecurrentCache:
    states: list  # one per layer
    length: int


class ResidualBlock(nn.Module):
    """Pre-LayerNorm residual: x + mixer(LN x), then x + MLP(LN x) when mlp_ratio > 0."""

    def __init__(self, mixer: nn.Module, n_embd: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(n_embd)
        self.mixer = mixer
        self.mlp = None
        if mlp_ratio > 0:
            self.mlp = nn.Sequential(
                nn.LayerNorm(n_embd), nn.Linear(n_embd, mlp_ratio * n_embd), nn.GELU(),
                nn.Linear(mlp_ratio * n_embd, n_embd), nn.Dropout(dropout),
            )
        self.drop = nn.Dropout(dropout)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mlp is None else x + self.mlp(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mlp(x + self.drop(self.mixer(self.norm(x))))

    def prefill(self, x: torch.Tensor):
        y, state = self.mixer.prefill(self.norm(x))
        return self._mlp(x + y), state

    def step(self, x: torch.Tensor, state):
        y, state = self.mixer.step(self.norm(x), state)
        return self._mlp(x + y), state


class RecurrentLM(nn.Module):
    """Token ids in [0, vocab_size] (id vocab_size = begin-of-sequence) → logits over vocab_size tokens."""

    context_size = None  # a recurrence has no positional limit

    def __init__(self, vocab_size: int, n_embd: int, mixers: list[nn.Module], mlp_ratio: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        if vocab_size < 1 or n_embd < 1 or not mixers:
            raise ValueError(f"need vocab_size, n_embd, n_layer >= 1, got {vocab_size}, {n_embd}, {len(mixers)}")
        self.vocab_size, self.n_layer, self.n_embd = vocab_size, len(mixers), n_embd
        self.token_embedding = nn.Embedding(vocab_size + 1, n_embd)
        nn.init.normal_(self.token_embedding.weight, std=0.02)  # small: the tied head starts near uniform
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(ResidualBlock(m, n_embd, mlp_ratio, dropout) for m in mixers)
        self.ln_f = nn.LayerNorm(n_embd)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        # Tied head, as in GPT: the embedding minus the begin-of-sequence row, which is never predicted.
        return F.linear(self.ln_f(h), self.token_embedding.weight[: self.vocab_size])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.token_embedding(tokens))
        for block in self.blocks:
            h = block(h)
        return self._logits(h)

    def prefill(self, tokens: torch.Tensor) -> tuple[torch.Tensor, RecurrentCache]:
        h, states = self.token_embedding(tokens), []
        for block in self.blocks:
            h, state = block.prefill(h)
            states.append(state)
        return self._logits(h[:, -1]), RecurrentCache(states, tokens.shape[1])

    def step(self, token: torch.Tensor, cache: RecurrentCache) -> tuple[torch.Tensor, RecurrentCache]:
        h, states = self.token_embedding(token), []
        for block, state in zip(self.blocks, cache.states):
            h, state = block.step(h, state)
            states.append(state)
        return self._logits(h), RecurrentCache(states, cache.length + 1)

    def cache_length(self, cache: RecurrentCache) -> int:
        return cache.length
