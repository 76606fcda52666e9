"""A Hugging Face causal LM as a sequence backbone (`sequence_backbone.py`): any `AutoModelForCausalLM`.

divlab's begin-of-sequence id `vocab_size` is read as the model's own `bos_token_id` (its
`eos_token_id` when it has none, as GPT-2's `<|endoftext|>` is both), so the `ar` family's
convention — every token predicted, the first from BOS — holds unchanged. The incremental step
runs on the model's key/value cache. `transformers` is an optional extra, imported only here.
"""
import inspect
from typing import Any

from torch import Tensor, nn

INSTALL_HINT = "pip install 'divlab[hf]'"


def import_transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"a Hugging Face policy (policy.hf_model=...) needs transformers: {INSTALL_HINT}") from error
    return transformers


def load_causal_lm(name_or_path: str) -> nn.Module:
    """`AutoModelForCausalLM.from_pretrained(name_or_path)` in float32 (a local directory, or a Hub name)."""
    return import_transformers().AutoModelForCausalLM.from_pretrained(name_or_path).float()


def context_size(model: nn.Module) -> int | None:
    """The longest input the model's positions allow (GPT-2's `n_positions`, most others' `max_position_embeddings`)."""
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


class HFCausalLM(nn.Module):
    def __init__(self, model: nn.Module, vocab_size: int, block_size: int | None = None):
        """`model`: a loaded causal LM whose logits have `vocab_size` entries; `block_size` is the family's."""
        super().__init__()
        config = model.config
        bos = config.bos_token_id if config.bos_token_id is not None else config.eos_token_id
        if bos is None:
            raise ValueError(f"{config.name_or_path!r} has neither bos_token_id nor eos_token_id to start sequences")
        self.model = model
        self.vocab_size = int(vocab_size)
        self.context_size = context_size(model)
        self.bos_token_id = int(bos[0] if isinstance(bos, (list, tuple)) else bos)
        # transformers ≥ 5.2x names the key/value cache `cache`; earlier versions `past_key_values`
        self._cache = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"

    def _hf_ids(self, tokens: Tensor) -> Tensor:
        return tokens.masked_fill(tokens == self.vocab_size, self.bos_token_id)

    def _run(self, tokens: Tensor, past=None, use_cache: bool = False):
        out = self.model(input_ids=self._hf_ids(tokens), use_cache=use_cache, **{self._cache: past})
        return out.logits[..., : self.vocab_size], getattr(out, self._cache)

    def forward(self, tokens: Tensor) -> Tensor:
        return self._run(tokens)[0]

    def prefill(self, tokens: Tensor) -> tuple[Tensor, Any]:
        logits, past = self._run(tokens, use_cache=True)
        return logits[:, -1], (past, tokens.shape[1])

    def step(self, token: Tensor, cache: Any) -> tuple[Tensor, Any]:
        past, length = cache
        logits, past = self._run(token[:, None], past, use_cache=True)
        return logits[:, -1], (past, length + 1)

    def cache_length(self, cache: Any) -> int:
        return cache[1]
