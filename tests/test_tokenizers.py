"""Tokenizers on hand examples: ids, round trips, unknown characters, the characters each token covers."""
import pytest

from divlab.datamodules.tokenizers import BPETokenizer, CharTokenizer, utf8_char_counts


def test_char_tokenizer_ids_are_positions_in_the_sorted_character_set(tmp_path):
    tokenizer = CharTokenizer.fit(["bé a", "ca"])
    assert tokenizer.chars == " abcé" and tokenizer.vocab_size == 5
    assert tokenizer.encode_array("cab é").tolist() == [3, 1, 2, 0, 4]
    assert tokenizer.decode([4, 0, 2]) == "é b"
    tokenizer.save(tmp_path / "tokenizer.json")
    assert CharTokenizer.load(tmp_path / "tokenizer.json").encode_array("abc").tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="character 'z' is not in the tokenizer's vocabulary"):
        tokenizer.encode_array("abz")


def test_bpe_token_bytes_are_the_utf8_bytes_each_token_stands_for():
    text = "café café au lait\n" * 20
    tokenizer = BPETokenizer.fit([text], vocab_size=270)
    ids = tokenizer.encode_array(text)
    token_bytes = tokenizer.token_bytes()
    assert b"".join(token_bytes[i] for i in ids) == text.encode()
    assert tokenizer.decode(ids) == text


def test_utf8_char_counts_count_leading_bytes():
    assert utf8_char_counts([b"ab", "é".encode(), "é".encode()[:1], "é".encode()[1:], b""]).tolist() == [2, 1, 1, 0, 0]
