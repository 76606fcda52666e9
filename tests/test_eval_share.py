"""benchmarks/eval_share.py reads a run's evaluation share from its record."""
import json

from benchmarks.eval_share import presets, share


def test_the_share_is_evaluation_over_the_attempts_wall_time(tmp_path):
    record = {
        "status": "completed",
        "config": {"experiment_name": "vae_ring8"},
        "metrics": {"time/val/toy_samples_seconds": 2.5, "time/test/likelihood_seconds": 4.0, "val/loss": 1.0},
        "attempts": [
            {"started_at": "2026-12-01T06:00:00+00:00", "finished_at": "2026-12-01T06:00:10+00:00", "evaluation_seconds": 9},
            {"started_at": "2026-12-01T07:00:00+00:00", "finished_at": "2026-12-01T07:02:00+00:00", "evaluation_seconds": 6},
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
