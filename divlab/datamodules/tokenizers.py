"""Tokenizers for text data: one token per character, or byte-level BPE trained on the corpus.

Both map text to an int64 id array and back (`encode_array`, `decode`), give the bytes each token
stands for (`token_bytes`, so bits per character can be computed from bits per token), and save to
and load from one JSON file kept beside the cached token arrays.
"""
import json
from pathlib import Path

import numpy as np


def utf8_char_counts(token_bytes: list[bytes]) -> np.ndarray:
    """Characters each token covers: its UTF-8 bytes that start a character (not 0b10xxxxxx).

    Every character has exactly one leading byte, so summing over a token sequence counts the
    characters of its text, even when byte-level tokens split a multi-byte character.
    """
    return np.array([sum((b & 0xC0) != 0x80 for b in token) for token in token_bytes], dtype=np.int64)


class CharTokenizer:
    """One token per character; the vocabulary is the corpus's sorted set of characters."""

    kind = "char"

    def __init__(self, chars: str):
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)

    @classmethod
    def fit(cls, texts) -> "CharTokenizer":
        codes = np.unique(np.concatenate([np.frombuffer(t.encode("utf-32-le"), np.uint32) for t in texts]))
        return cls("".join(map(chr, codes)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode_array(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
        ids = np.searchsorted(self._codes, codes)
        ids = np.minimum(ids, len(self._codes) - 1)
        unknown = self._codes[ids] != codes
        if unknown.any():
            raise ValueError(f"character {chr(codes[unknown.argmax()])!r} is not in the tokenizer's vocabulary")
        return ids.astype(np.int64)

    def decode(self, ids) -> str:
        return self._codes[np.asarray(ids, dtype=np.int64)].tobytes().decode("utf-32-le")

    def token_bytes(self) -> list[bytes]:
        return [c.encode() for c in self.chars]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"kind": "char", "chars": self.chars}))

    @classmethod
    def load(cls, path: Path) -> "CharTokenizer":
        return cls(json.loads(path.read_text())["chars"])


class BPETokenizer:
    """Byte-level BPE trained on the corpus with Hugging Face `tokenizers` (GPT-2 style, no download)."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def fit(cls, texts, vocab_size: int) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode_array(self, text: str) -> np.ndarray:
        lines = text.splitlines(keepends=True)
        encoded = self.tokenizer.encode_batch_fast(lines)
        return np.fromiter((i for e in encoded for i in e.ids), dtype=np.int64)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(np.asarray(ids, dtype=np.int64).tolist(), skip_special_tokens=False)

    def token_bytes(self) -> list[bytes]:
        unicode_to_byte = {v: k for k, v in _bytes_to_unicode().items()}
        vocab = self.tokenizer.get_vocab()
        by_id = sorted(vocab.items(), key=lambda kv: kv[1])
        return [bytes(unicode_to_byte[c] for c in token) for token, _ in by_id]

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: Path) -> "BPETokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-character map used by byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    bs = list(printable)
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer}
