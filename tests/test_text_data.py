"""Text data: tokenizers round-trip, whole-text splits, memory-mapped caches, bpc conversion, bad input."""
import math

import numpy as np
import pytest
import torch

from divlab.datamodules.text import TextDataModule, shakespeare_files, split_texts
from divlab.lightning_modules.likelihoods import bits_per_character

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 40


@pytest.fixture(scope="module")
def char_data(tmp_path_factory):
    return TextDataModule(data_dir=str(tmp_path_factory.mktemp("data")), block_size=32, batch_size=4)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "hamlet.txt"
    path.write_text(TEXT + "Ünïcödé — ok\n")
    return path


def test_default_corpus_is_42_texts_and_split_shares_no_play(char_data):
    names = [p.name for p in shakespeare_files()]
    assert len(names) == 42 and names == sorted(names)
    splits = char_data.meta["texts"]
    assert not set(splits["train"]) & set(splits["val"])
    assert sorted(splits["train"] + splits["val"]) == names
    val_chars = char_data.meta["counts"]["val"]["chars"]
    total = sum(count["chars"] for count in char_data.meta["counts"].values())
    assert 0.05 < val_chars / total < 0.15


def test_validation_tokens_are_exactly_the_validation_texts(char_data):
    val_text = "".join(path.read_text() for path in shakespeare_files() if path.name in char_data.meta["texts"]["val"])
    tokens = char_data.tokens["val"]
    assert isinstance(tokens, np.memmap) and len(tokens) == len(val_text)
    assert char_data.decode(tokens[:5000]) == val_text[:5000]
    assert char_data.decode(tokens[-5000:]) == val_text[-5000:]


def test_char_tokenizer_round_trips_the_whole_corpus(char_data):
    corpus = "".join(path.read_text() for path in shakespeare_files())
    assert char_data.decode(char_data.encode(corpus)) == corpus
    assert char_data.vocab_size == len(set(corpus))


def test_split_texts_takes_every_nth_whole_text():
    assert split_texts(list("abcdefghij"), 5) == {"train": list("abcdfghi"), "val": ["e", "j"]}


def test_batches_are_random_windows_of_block_size_tokens(char_data):
    first, second = next(iter(char_data.train_dataloader())), next(iter(char_data.train_dataloader()))
    assert first.shape == (4, 32) and first.dtype == torch.long
    assert not torch.equal(first, second)
    val = char_data.real_samples("val", 3)
    assert torch.equal(val, char_data.real_samples("val", 3)) and val.shape == (3, 32)


def test_loaders_give_the_batches_they_gave_before_sharing_the_in_memory_loaders(tmp_path):
    # Pinned from the loaders TextDataModule had of its own (b53a055): seeded, the first training batch
    # is the same random windows, and validation and test the same first evenly spaced windows.
    (tmp_path / "hamlet.txt").write_text(TEXT)
    data = TextDataModule(path=str(tmp_path / "hamlet.txt"), data_dir=str(tmp_path), block_size=12, batch_size=3)
    torch.manual_seed(0)
    assert [data.decode(row) for row in next(iter(data.train_dataloader()))] == [
        "e question:\n", "\nWhether 'ti", "er\nTo be, or"]
    for loader in (data.val_dataloader(), data.test_dataloader()):
        assert [data.decode(row) for row in next(iter(loader))] == ["To be, or no", "o be, or not", " be, or not "]
    assert (len(data.train_dataloader()), len(data.val_dataloader())) == (250, 110)


def test_test_windows_are_evenly_spaced_over_the_validation_text_and_default_to_val_windows(tmp_path):
    (tmp_path / "hamlet.txt").write_text(TEXT)
    data = TextDataModule(path=str(tmp_path / "hamlet.txt"), data_dir=str(tmp_path), block_size=12, batch_size=3,
                          val_windows=4, test_windows=10)
    last = len(data.tokens["val"]) - 12  # the last window's start
    starts = {split: data.dataset(split).starts.tolist() for split in ("val", "test")}
    assert starts["val"] == [0, last // 3, 2 * last // 3, last]
    assert len(starts["test"]) == 10 and starts["test"][0] == 0 and starts["test"][-1] == last
    assert (len(data.val_dataloader()), len(data.test_dataloader())) == (2, 4)  # batches of 3
    same = TextDataModule(path=str(tmp_path / "hamlet.txt"), data_dir=str(tmp_path), block_size=12, val_windows=4)
    assert same.dataset("test").starts.tolist() == starts["val"]
    with pytest.raises(ValueError, match="data.test_windows"):
        TextDataModule(path=str(tmp_path / "hamlet.txt"), data_dir=str(tmp_path), test_windows=0)


def test_cache_is_reused_and_keyed_by_settings(tmp_path, text_file):
    a = TextDataModule(path=str(text_file), data_dir=str(tmp_path), block_size=16)
    b = TextDataModule(path=str(text_file), data_dir=str(tmp_path), block_size=16)
    c = TextDataModule(path=str(text_file), data_dir=str(tmp_path), block_size=16, val_fraction=0.2)
    assert a.cache_dir == b.cache_dir != c.cache_dir
    assert len(list((tmp_path / "text_cache").iterdir())) == 2


def test_bpe_tokenizer_round_trips_and_is_saved_beside_the_tokens(tmp_path, text_file):
    data = TextDataModule(path=str(text_file), data_dir=str(tmp_path), tokenizer="bpe", bpe_vocab_size=300,
                          block_size=16)
    assert (data.cache_dir / "tokenizer.json").is_file() and data.vocab_size <= 300
    text = text_file.read_text()
    ids = data.encode(text)
    assert data.decode(ids) == text
    assert len(ids) < len(text) / 2  # merges learned
    # The characters each token covers sum to the text's characters, multi-byte characters included.
    assert data.token_lengths[ids.numpy()].sum() == len(text)
    assert data.chars_per_token > 1


def test_bits_per_character_hand_example():
    # Three tokens covering 1 + 3 + 2 = 6 characters, each with probability 1/2: 3 bits over 6 chars.
    nll = torch.tensor(3 * math.log(2.0))
    assert bits_per_character(nll, torch.tensor(6.0)).item() == pytest.approx(0.5)
    # At character level bits/char equals bits/token.
    assert bits_per_character(torch.tensor(10 * math.log(2.0)), torch.tensor(10.0)).item() == pytest.approx(1.0)


def test_user_file_is_split_by_position(tmp_path, text_file):
    data = TextDataModule(path=str(text_file), data_dir=str(tmp_path), block_size=16)
    text = text_file.read_text()
    joined = data.decode(data.tokens["train"][:]) + data.decode(data.tokens["val"][:])
    assert joined == text and data.name == "hamlet"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary"),
        (b"\xff\xfe bad utf8 \xff", "is not UTF-8"),
        (b"too short\n", "fewer than one block"),
    ],
)
def test_bad_text_input_gives_a_clear_error(tmp_path, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        TextDataModule(path=str(path), data_dir=str(tmp_path / "cache"), block_size=64)
