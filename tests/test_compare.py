"""compare.py on real tiny runs: rows, means and stds match the run records; plots are real PNGs."""
import math
import statistics

import pytest
from PIL import Image

import compare
from divlab.tracking.runs import RunSelectionError, load_runs
from divlab.tracking.table import build_table, to_markdown

MEMBERS = {"vae": ["experiment=vae_ring8"], "gan/js": ["experiment=gan_ring8", "divergence=js"],
           "gan/wasserstein": ["experiment=gan_ring8", "divergence=wasserstein"]}
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two seeds of each member, as a multirun directory would hold them."""
    import train
    from conftest import compose_config

    root = tmp_path_factory.mktemp("study")
    for label, overrides in MEMBERS.items():
        for seed in SEEDS:
            out = root / f"{label.replace('/', '_')}_{seed}"
            train.run(compose_config(out, [*overrides, "debug=tiny", "trainer=cpu", "logger=csv", f"seed={seed}"]))
    return root


def test_table_rows_means_and_stds_match_the_records(study, tmp_path):
    runs = load_runs([study])
    written = compare.compare(runs, tmp_path)
    table = written["table"]
    assert set(table.rows) == set(MEMBERS)
    assert all(table.counts[label] == len(SEEDS) for label in MEMBERS)
    for metric in table.metrics:
        for label in MEMBERS:
            values = [r["metrics"][metric] for r in runs if compare.run_label(r) == label and metric in r["metrics"]]
            if values:
                cell = table.rows[label][metric]
                assert cell.mean == pytest.approx(statistics.mean(values))
                expected_std = statistics.stdev(values) if all(map(math.isfinite, values)) else math.nan
                assert cell.std == pytest.approx(expected_std, nan_ok=True)
    markdown = (tmp_path / "table.md").read_text()
    assert all(f"| {label} | 2 |" in markdown for label in MEMBERS)
    assert (tmp_path / "table.csv").read_text().count("\n") == len(MEMBERS) + 1


def test_plots_are_pngs_with_a_bar_per_row_and_a_tile_per_run(study, tmp_path):
    runs = load_runs([study])
    written = compare.compare(runs, tmp_path)
    assert written["tiles"] == len(MEMBERS) * len(SEEDS)
    for metric, bars in written["bars"].items():
        assert bars == sum(metric in cells for cells in written["table"].rows.values())
    for name in ("metrics", "curves", "samples"):
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.format == "PNG" and image.size[0] > 100


def test_cli_errors_are_clear(study, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert compare.main([str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "it is empty" in capsys.readouterr().err
    (tmp_path / "norecord").mkdir()
    (tmp_path / "norecord" / "notes.txt").write_text("x")
    assert compare.main([str(tmp_path / "norecord"), "--out", str(tmp_path / "o")]) == 2
    assert "no run.json below it" in capsys.readouterr().err
    assert compare.main([str(study), "--out", str(tmp_path / "o"), "--metrics", "test/nope"]) == 2
    assert "no run has metric(s) test/nope" in capsys.readouterr().err


def test_runs_of_different_data_are_refused(study, train_with, tmp_path):
    other = tmp_path / "grid"
    train_with("experiment=vae_ring8", "data=grid25", "debug=tiny", "trainer=cpu", "logger=csv", out=other)
    with pytest.raises(RunSelectionError, match=r"different data mixed together: grid25 \(1 runs\), ring8 \(6 runs\)"):
        load_runs([study, other])


def test_a_missing_metric_lists_the_available_ones(study):
    with pytest.raises(ValueError, match="available: .*test/"):
        build_table(load_runs([study]), ["val/unknown"])


def test_divergence_estimates_are_reported_but_never_ranked(study):
    table = build_table(load_runs([study]), ["train/divergence_estimate", "test/modes_covered"])
    assert table.best("train/divergence_estimate") is None
    assert table.best("test/modes_covered") is not None
    header = to_markdown(table).splitlines()[0]
    assert "| train/divergence_estimate |" in header and "test/modes_covered ↑" in header
