"""benchmarks/eval_share.py reads a run's evaluation share from its record."""
import json
from pathlib import Path
from types import SimpleNamespace

from benchmarks import eval_share
from benchmarks.eval_share import presets, run_preset, share


def test_the_share_is_evaluation_over_the_attempts_wall_time(tmp_path):
    record = {
        "status": "completed",
        "config": {"experiment_name": "vae_ring8"},
        "metrics": {"time/val/toy_samples_seconds": 2.5, "time/test/likelihood_seconds": 4.0, "val/loss": 1.0},
        "attempts": [
            {
                "started_at": "2026-12-01T06:00:00+00:00",
                "finished_at": "2026-12-01T06:00:10+00:00",
                "evaluation_seconds": 9,
            },
            {
                "started_at": "2026-12-01T07:00:00+00:00",
                "finished_at": "2026-12-01T07:02:00+00:00",
                "evaluation_seconds": 6,
            },
        ],
    }
    (tmp_path / "run.json").write_text(json.dumps(record))
    row = share(tmp_path)  # the last attempt: 6 s of 120 s
    assert (row["wall"], row["evaluation"], row["share"]) == (120.0, 6, 0.05)
    assert row["costliest"] == "time/test/likelihood_seconds 4.0 s" and row["experiment"] == "vae_ring8"


def test_presets_leave_out_sweeps_and_studies():
    names = presets()
    assert "vae_ring8" in names and "ddpm_fashion_mnist" in names
    assert not any(n.startswith(("study_", "best_")) or n == "align_frontier" for n in names)


def test_a_preset_listed_twice_trains_twice_in_fresh_directories(tmp_path, monkeypatch):
    run_dirs = []

    def fake_train(overrides):  # train.py resumes a directory that holds a run: each call must get a new one
        run_dir = Path(next(o for o in overrides if o.startswith("hydra.run.dir=")).split("=", 1)[1])
        assert not run_dir.exists()
        run_dir.mkdir(parents=True)
        run_dirs.append(run_dir)
        return SimpleNamespace(run_dir=run_dir)

    monkeypatch.setattr(eval_share, "train", fake_train)
    assert [run_preset("score_ring8", tmp_path) for _ in range(3)] == run_dirs
    assert [d.name for d in run_dirs] == ["score_ring8", "score_ring8_2", "score_ring8_3"]


def test_the_eval_share_block_marks_each_preset_against_the_goal(tmp_path, monkeypatch):
    from divlab.tracking import benchmark_tables

    rows = [{"experiment": "best_ring8", "status": "completed", "wall": 400.0, "evaluation": 8.0, "share": 0.02,
             "costliest": "time/test/toy_plot_seconds 0.5 s"},
            {"experiment": "score_fashion_mnist", "status": "completed", "wall": 100.0, "evaluation": 12.0,
             "share": 0.12, "costliest": "time/test/likelihood_seconds 9.0 s"}]
    (tmp_path / "shares.json").write_text(json.dumps(
        {"command": "python benchmarks/eval_share.py", "commit": "abc1234", "date": "2026-12-06T17:00:00+00:00",
         "machine": "m", "torch": "2.14", "threads": 1, "wall_s": 600.0, "goal": 0.10, "rows": rows}))
    monkeypatch.setattr(benchmark_tables, "BENCHMARK_RECORDS", tmp_path)
    block = benchmark_tables.eval_share("shares")
    assert "| `best_ring8` | completed | 400 | 8 | 2.0% | ✓ | time/test/toy_plot_seconds 0.5 s | – |" in block
    assert "| `score_fashion_mnist` | completed | 100 | 12 | 12.0% | not met |" in block
    assert "- **Date:** 2026-12-06 17:00 UTC; **wall time:** 10.0 min, the whole benchmark" in block


def test_the_overhead_block_judges_each_case_against_its_own_goal_by_two_standard_errors(tmp_path, monkeypatch):
    from divlab.tracking import benchmark_tables

    # Trainer ÷ plain per repeat: 1.01, 1.02, 1.00, 1.01 (mean 1.010, SE 0.0041: under 1.03 beyond two SEs);
    # 1.4, 1.5, 1.45 (1.450 ± 0.029: over 1.3 beyond two SEs); 1.00, 1.06 (1.03 ± 0.03: within two SEs of 1.03).
    rows = [{"case": "vae (conv)", "plain_ms": 10.0, "lightning_ms": 10.1, "ratio": 1.01, "goal": 1.03,
             "plain_ms_repeats": [10.0] * 4, "lightning_ms_repeats": [10.1, 10.2, 10.0, 10.1], "loader_ms": 0.1},
            {"case": "gan_toy", "plain_ms": 1.0, "lightning_ms": 1.45, "ratio": 1.45, "goal": 1.3,
             "plain_ms_repeats": [1.0] * 3, "lightning_ms_repeats": [1.4, 1.5, 1.45], "loader_ms": None},
            {"case": "dcgan", "plain_ms": 10.0, "lightning_ms": 10.3, "ratio": 1.03, "goal": 1.03,
             "plain_ms_repeats": [10.0] * 2, "lightning_ms_repeats": [10.0, 10.6], "loader_ms": 0.3}]
    (tmp_path / "overhead.json").write_text(json.dumps(
        {"command": "python benchmarks/overhead.py", "commit": "abc1234", "date": "2026-12-06T18:00:00+00:00",
         "machine": "m", "torch": "2.14", "threads": 2, "wall_s": 120.0, "steps": 30, "warmup": 5, "repeats": 4,
         "rows": rows}))
    monkeypatch.setattr(benchmark_tables, "BENCHMARK_RECORDS", tmp_path)
    block = benchmark_tables.overhead("overhead")
    assert "| vae (conv) | 10.00 | 10.10 | 1.0100 ± 0.0041 | ≤ 1.03 | met beyond two SEs | 0.10 |" in block
    assert "| gan_toy | 1.00 | 1.45 | 1.450 ± 0.029 | ≤ 1.3 | missed beyond two SEs | – |" in block
    assert "| dcgan | 10.00 | 10.30 | 1.030 ± 0.030 | ≤ 1.03 | within two SEs | 0.30 |" in block
    assert "(medians of 4 alternated repeats of 30 steps after 5 warm-up; the ratio: mean ± SE" in block


def test_an_overhead_record_without_its_repeats_gets_no_verdict(tmp_path, monkeypatch):
    from divlab.tracking import benchmark_tables

    row = {"case": "dcgan", "plain_ms": 58.04, "lightning_ms": 60.36, "ratio": 1.040, "goal": 1.03, "loader_ms": 0.3}
    (tmp_path / "old.json").write_text(json.dumps({"steps": 30, "warmup": 5, "repeats": 5, "rows": [row]}))
    monkeypatch.setattr(benchmark_tables, "BENCHMARK_RECORDS", tmp_path)
    assert "| dcgan | 58.04 | 60.36 | 1.04 | ≤ 1.03 | no spread | 0.30 |" in benchmark_tables.overhead("old")


def test_a_sweep_folder_is_one_row_its_runs_summed(tmp_path):
    # The share is the folder's summed evaluation over its summed wall (7/100), not the mean of its runs' shares
    # ((0.05 + 0.1) / 2 = 0.075).
    for job, (wall, evaluation) in enumerate([(60, 3), (40, 4)]):
        run = tmp_path / "dpo" / f"{job}_align_frontier"
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({
            "status": "completed", "config": {"experiment_name": "align_frontier"}, "git_commit": "abc1234def",
            "metrics": {}, "attempts": [{"started_at": "2026-12-06T10:00:00", "evaluation_seconds": evaluation,
                                         "finished_at": f"2026-12-06T10:01:{wall - 60:02d}" if wall >= 60
                                         else f"2026-12-06T10:00:{wall:02d}"}]}))
    (tmp_path / "dpo" / "multirun.yaml").write_text("{}")  # a sweep's own file, not a run
    row = eval_share.sweep(tmp_path / "dpo")
    assert row["experiment"] == "align_frontier (dpo: 2 runs)" and row["commit"] == "abc1234"
    assert (row["wall"], row["evaluation"], row["share"]) == (100, 7, 0.07)
    assert row["costliest"] == "runs 5.0% – 10.0%"
