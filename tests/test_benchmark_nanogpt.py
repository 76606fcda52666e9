"""The nanoGPT comparison (benchmarks/char_gpt_vs_nanogpt.py): it skips clearly without a checkout, writes
nanoGPT's data files from divlab's own tokens, and scores both models on the same positions."""
import pickle

import numpy as np
import torch

from benchmarks import char_gpt_vs_nanogpt as bench


def test_without_a_checkout_it_says_so_and_exits_cleanly(tmp_path, capsys):
    assert bench.main(["--nanogpt", str(tmp_path)]) == 0
    assert "skipped" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # nothing written where no checkout is


class CharData:
    """A stand-in datamodule holding divlab's char-level attributes."""
    alphabet = "\nabc !"
    vocab_size = len(alphabet)
    tokens = {"train": np.array([1, 2, 3, 4, 0, 5], dtype=np.int64), "val": np.array([3, 2, 1], dtype=np.int64)}

    def decode(self, ids):
        return "".join(self.alphabet[i] for i in ids)


def test_nanogpt_data_files_hold_divlab_s_tokens_and_vocabulary(tmp_path):
    bench.write_nanogpt_data(CharData(), tmp_path)
    for split, tokens in CharData.tokens.items():
        assert np.fromfile(tmp_path / f"{split}.bin", dtype=np.uint16).tolist() == tokens.tolist()
    meta = pickle.loads((tmp_path / "meta.pkl").read_bytes())
    assert meta["vocab_size"] == 6 and meta["itos"][5] == "!" and meta["stoi"]["a"] == 1


def test_heldout_loss_averages_every_scored_position():
    windows = torch.arange(12).reshape(4, 3)
    # a model whose loss at each scored position is that position's token: the mean of every token but the first
    loss = bench.heldout_loss(lambda x: x[:, 1:].float(), windows, batch=3)
    assert loss == windows[:, 1:].float().mean().item()
