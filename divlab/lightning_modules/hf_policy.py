"""A Hugging Face causal LM as π_ref: `policy.hf_model=<Hub name or local directory>` (`pip install 'divlab[hf]'`).

The model becomes the backbone of an `ar`-family model (`networks/hf_causal_lm.py`), so DPO, PPO
and the reward model use it, and copy it into π, exactly as they do a divlab checkpoint. Its own
tokenizer encodes and decodes; the prompts' corpus is the default policy's (Shakespeare), as text
re-tokenised by that tokenizer. Loading a Hub name downloads it unless it is already in the
Hugging Face cache; a local directory (`save_pretrained`) never touches the network.
"""
import functools
from pathlib import Path

import torch

from divlab.datamodules.text import TextDataModule
from divlab.lightning_modules.autoregressive import AutoregressiveModel
from divlab.lightning_modules.networks.hf_causal_lm import HFCausalLM, context_size, import_transformers, load_causal_lm

CORPUS_CHARS = 1_000_000  # per split: more than the prompts of the controlled task and the evaluation read


class HFText:
    """What the alignment family reads from a policy's `text`: `encode`, `decode`, `vocab_size` and the
    corpus splits as token ids (`tokens["train" | "val"]`), all in the Hugging Face tokenizer's ids."""

    def __init__(self, tokenizer, corpus: dict[str, str]):
        self.tokenizer = tokenizer
        self._corpus = corpus

    @functools.cached_property
    def tokens(self) -> dict:
        """The corpus splits as token ids, tokenised on first use: 1M characters a split took 5–7 s of every HF run's
        start-up, also in runs that never read them (DPO on a preference file without the alignment callback)."""
        return {split: self.encode(text).numpy() for split, text in self._corpus.items()}

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def chars_per_token(self) -> float:
        """Mean characters per token over the validation split (as `TextDataModule.chars_per_token`)."""
        return len(self.decode(self.tokens["val"])) / len(self.tokens["val"])

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(torch.as_tensor(ids).tolist())


@functools.lru_cache(maxsize=2)
def load_hf_policy(name_or_path: str, data_dir: str) -> tuple[AutoregressiveModel, HFText, str]:
    """The causal LM `name_or_path` as an `ar`-family model, its tokenizer over the default corpus, and
    where it was read from (`reference.load_reference_policy` freezes it into π_ref)."""
    local = Path(name_or_path).expanduser()
    source = str(local.resolve()) if local.exists() else name_or_path
    tokenizer = import_transformers().AutoTokenizer.from_pretrained(source)
    lm = load_causal_lm(source)
    vocab_size = lm.get_output_embeddings().out_features
    if len(tokenizer) > vocab_size:
        raise ValueError(f"policy.hf_model={name_or_path!r}: its tokenizer has {len(tokenizer)} tokens but the "
                         f"model only {vocab_size} logits")
    block_size = context_size(lm)
    if block_size is None:
        raise ValueError(f"policy.hf_model={name_or_path!r}: its config gives no context length "
                         "(n_positions or max_position_embeddings)")
    chars = TextDataModule(tokenizer="char", data_dir=data_dir)  # the default policy's corpus, as text
    corpus = {split: chars.decode(chars.tokens[split][:CORPUS_CHARS]) for split in ("train", "val")}
    model = AutoregressiveModel((block_size,), functools.partial(HFCausalLM, lm), optimizer=None,
                                vocab_size=vocab_size)
    return model, HFText(tokenizer, corpus), source
