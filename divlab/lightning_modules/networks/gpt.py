"""A GPT (nanoGPT style): pre-LayerNorm transformer blocks over learned token and position embeddings.

Implements `SequenceBackbone` (networks/sequence_backbone.py): `forward(tokens) -> logits`, and
`prefill`/`step` with a key/value cache for incremental decoding.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def with_bias_of_older_runs(backbone: dict) -> dict:
    """A GPT's config as a run saved it; one saved before `bias` was a setting (every GPT had biases then) gets
    `bias: true`, so its checkpoint loads into the network it was trained as."""
    if str(backbone.get("_target_", "")).endswith("networks.gpt.GPT") and "bias" not in backbone:
        return {**backbone, "bias": True}
    return backbone


@dataclass
class KVCache:
    """Keys and values of every layer, preallocated for the whole context: [n_layer, B, H, context, D]."""

    keys: torch.Tensor
    values: torch.Tensor
    length: int = 0


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
    """Causal scaled dot-product attention over [B, H, T, D] heads.

    On a CPU, half-precision heads (bf16 autocast: `trainer.precision=bf16-mixed`) are attended in float32 and the
    result cast back: PyTorch's CPU flash-attention backward took 5.7× as long in bfloat16 as in float32 at
    `char_gpt`'s shapes (torch 2.14, AVX-512 BF16 CPU; README at aeac04c, Benchmarks), more than the bfloat16 matrix
    products saved. On a GPU the half-precision kernel is the fast one and is used as is.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout_p, is_causal=True)
        return y.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool = True):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor):
        b, t, c = x.shape
        return [z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in self.qkv(x).split(c, dim=2)]

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        b, h, t, d = y.shape
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(b, t, h * d)))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        q, k, v = self._heads(x)
        if cache is None:
            dropout = self.dropout if self.training else 0.0
            return self._merge(causal_attention(q, k, v, dropout))
        # Incremental: write this chunk's keys/values into the cache, attend to everything so far.
        start, end = cache.length, cache.length + x.shape[1]
        cache.keys[layer, :, :, start:end] = k
        cache.values[layer, :, :, start:end] = v
        keys, values = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]
        mask = None
        if x.shape[1] > 1:  # a prefix chunk: causal within itself, full view of what came before
            mask = torch.ones(end - start, end, dtype=torch.bool, device=x.device).tril(start)
        return self._merge(F.scaled_dot_product_attention(q, keys, values, attn_mask=mask))


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token ids in [0, vocab_size] (id vocab_size = begin-of-sequence) → logits over vocab_size tokens.

    Without biases in its Linears and LayerNorms by default (`bias=False`, nanoGPT's `train.py` default: fewer
    tensors to add, differentiate and update); `bias=True` adds them."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int = 4, n_head: int = 4, n_embd: int = 128,
                 dropout: float = 0.0, bias: bool = False):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"model.backbone.n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.vocab_size, self.context_size = vocab_size, block_size
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.token_embedding = nn.Embedding(vocab_size + 1, n_embd)
        self.position_embedding = nn.Embedding(block_size, n_embd)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/√(2·n_layer), so the residual stream's variance
        # does not grow with depth.
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        # Weight tying: the output layer is the input embedding (minus the begin-of-sequence row,
        # which is never predicted); fewer parameters and better perplexity (Press & Wolf 2017).
        return F.linear(self.ln_f(h), self.token_embedding.weight[: self.vocab_size])

    def _embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        t = tokens.shape[1]
        if start + t > self.context_size:
            raise ValueError(f"sequence of {start + t} tokens exceeds the GPT's block_size={self.context_size}")
        positions = torch.arange(start, start + t, device=tokens.device)
        return self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self._embed(tokens)
        for block in self.blocks:
            h = block(h)
        return self._logits(h)

    def new_cache(self, batch_size: int, like: torch.Tensor) -> KVCache:
        d = self.n_embd // self.n_head
        shape = (self.n_layer, batch_size, self.n_head, self.context_size, d)
        dtype = torch.get_autocast_dtype(like.device.type) if torch.is_autocast_enabled(like.device.type) \
            else self.token_embedding.weight.dtype
        zeros = torch.zeros(shape, dtype=dtype, device=like.device)
        return KVCache(zeros, zeros.clone())

    def _run_cached(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        h = self._embed(tokens, cache.length)
        for layer, block in enumerate(self.blocks):
            h = block(h, cache, layer)
        cache.length += tokens.shape[1]
        return self._logits(h[:, -1])

    def prefill(self, tokens: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        cache = self.new_cache(tokens.shape[0], tokens)
        return self._run_cached(tokens, cache), cache

    def step(self, token: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        return self._run_cached(token[:, None], cache), cache

    def cache_length(self, cache: KVCache) -> int:
        return cache.length
