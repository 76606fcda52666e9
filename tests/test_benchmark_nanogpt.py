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


def test_divlabs_step_times_come_from_the_progress_lines_millisecond_stamps():
    # The lines' own "(0.5 s)" has 0.1 s resolution, 10 ms a step over 10 steps: the logging stamp is read instead.
    from benchmarks.char_gpt_vs_nanogpt import DIVLAB_PROGRESS

    log = ("[2026-12-06 14:15:36,111][divlab.progress][INFO] - epoch 0 batch 10/250 step 10 (0.5 s): train/loss 4\n"
           "[2026-12-06 14:15:36,408][divlab.progress][INFO] - epoch 0 batch 20/250 step 20 (0.8 s): train/loss 3\n"
           "[2026-12-06 14:15:36,500][divlab.progress][INFO] - epoch 0 step 20 validation: val/loss 3\n")
    assert DIVLAB_PROGRESS.findall(log) == [("2026-12-06 14:15:36,111", "10"), ("2026-12-06 14:15:36,408", "20")]


def test_nanogpt_evaluates_at_its_configs_interval_where_that_ends_on_the_last_step(tmp_path):
    # "As each tool runs by default": the char config's eval_interval (250) at 2,000 steps, where the last
    # evaluation (and so nanoGPT's checkpoint) falls on the last step; at 400 steps only at the end.
    (tmp_path / "config").mkdir()
    (tmp_path / bench.NANOGPT_CONFIG).write_text("eval_interval = 250 # keep frequent\neval_iters = 200\n")
    assert bench.nanogpt_eval_interval(tmp_path, 2000) == 250
    assert bench.nanogpt_eval_interval(tmp_path, 400) == 400
    assert bench.nanogpt_eval_interval(tmp_path, 250) == 250


def test_compile_compiles_both_arms_and_eager_neither(tmp_path, monkeypatch):
    # Each tool's own switch: nanoGPT's --compile, divlab's model.compile; eager runs pass False to both.
    import subprocess

    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 1, "", "stopped here")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    (tmp_path / "config").mkdir()
    (tmp_path / bench.NANOGPT_CONFIG).write_text("eval_interval = 250\n")
    for compile in (True, False):
        for run in (lambda: bench.run_nanogpt(tmp_path, tmp_path, 400, 1, "out", compile),
                    lambda: bench.run_divlab(tmp_path / "run", 400, 1, 0, compile)):
            try:
                run()
            except RuntimeError:
                pass
    nano_on, ours_on, nano_off, ours_off = commands
    assert "--compile=True" in nano_on and "model.compile=true" in ours_on
    assert "--compile=False" in nano_off and "model.compile=false" in ours_off
    assert not any(arg.startswith("--compile") for arg in bench.NANOGPT_SIZES)  # set once, by the flag
    # the default: both on the CPU in float32
    assert {"--device=cpu", "--dtype=float32"} <= set(nano_off)
    assert {"trainer.accelerator=cpu", "trainer.precision=32-true"} <= set(ours_off)
    # on CUDA in bf16: nanoGPT's autocast dtype and device, divlab's accelerator and bf16 autocast
    commands.clear()
    for run in (lambda: bench.run_nanogpt(tmp_path, tmp_path, 400, 1, "out", False, "cuda", "bf16"),
                lambda: bench.run_divlab(tmp_path / "run", 400, 1, 0, False, "cuda", "bf16")):
        try:
            run()
        except RuntimeError:
            pass
    nano, ours = commands
    assert {"--device=cuda", "--dtype=bfloat16"} <= set(nano)
    assert {"trainer.accelerator=gpu", "trainer.precision=bf16-mixed"} <= set(ours)
    assert not any(arg.startswith(("--device", "--dtype")) for arg in bench.NANOGPT_SIZES)


def test_bf16_on_a_cpu_is_refused_as_unlike(tmp_path, capsys):
    # nanoGPT trains in float32 on a CPU whatever its --dtype: a bf16 divlab arm there would compare unlike things.
    import pytest

    with pytest.raises(SystemExit):
        bench.main(["--nanogpt", str(tmp_path), "--precision", "bf16"])
    assert "--precision bf16 needs --device cuda" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
