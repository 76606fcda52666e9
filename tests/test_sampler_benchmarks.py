"""benchmarks/score_time_grid.py and benchmarks/sample_chunk.py run and print what the aeac04c README quotes
(fast, no training)."""
import sys

import pytest

from benchmarks import score_time_grid


def test_oracle_rows_show_the_uniform_grids_width_error_and_the_log_snr_grids_match(monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        ["score_time_grid", "--oracle", "--n", "1000", "--grids", "uniform:500", "log_snr:50:1", "log_snr:100:ddim"],
    )
    score_time_grid.main()
    rows = {
        line.split(" | ")[0].strip("| "): float(line.split(" | ")[-1].strip(" |"))
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| uniform") or line.startswith("| log_snr")
    }
    assert rows["uniform, 500 steps"] < 0.35
    assert rows["log_snr, 50 steps, 1 corrector steps"] == pytest.approx(1.05, abs=0.05)
    assert rows["log_snr, 100 DDIM steps"] == pytest.approx(0.97, abs=0.04)  # 0.97 at n = 4,000 (README at aeac04c)


def test_a_checkpoint_or_the_oracle_is_required(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["score_time_grid"])
    with pytest.raises(SystemExit):
        score_time_grid.main()


def test_ddpm_oracle_rows_are_narrower_than_the_data(monkeypatch, capsys):
    """DDPM's last step returns the posterior mean at σ₁ = 0.01 (linear β), so narrow modes come out narrower."""
    monkeypatch.setattr(sys, "argv", ["score_time_grid", "--oracle-ddpm", "--n", "1000"])
    score_time_grid.main()
    ratios = [float(line.split(" | ")[-1].strip(" |")) for line in capsys.readouterr().out.splitlines()
              if line.startswith("| linear") or line.startswith("| cosine")]
    assert len(ratios) == 4 and all(0.45 < r < 0.85 for r in ratios)


def test_sample_chunk_benchmark_prints_a_row_per_chunk_size(capsys, monkeypatch):
    from benchmarks import sample_chunk

    monkeypatch.setattr("sys.argv", ["sample_chunk", "--experiment", "score_ring8", "--n", "5", "--steps", "2",
                                     "--repeats", "1", "--chunks", "0", "2"])
    sample_chunk.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "ms per" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| null (whole batch)", "| 2"]
