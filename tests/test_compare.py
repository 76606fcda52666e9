"""compare.py on real tiny runs: rows, means and stds match the run records; plots are real PNGs."""
import json
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
    assert table.best("train/divergence_estimate") == []
    assert table.best("test/modes_covered") != []
    header = to_markdown(table).splitlines()[0]
    assert "| train/divergence_estimate |" in header and "test/modes_covered ↑" in header


# Run records made by hand: the grouping, ranking and plots on cases the tiny study does not have.

def record(family, seed, metrics, divergence=None, data="ring8", history=None, config=None):
    """A run record as train.py writes it, with the config keys that always differ between runs."""
    base = {"seed": seed, "data": {"seed": seed, "batch_size": 256},
            "paths": {"output_dir": f"/out/{family}/{seed}/{config}"},
            "run": {"wandb_id": f"id{seed}{family}", "tags": [f"seed:{seed}"]},
            "callbacks": {"model_checkpoint": {"dirpath": f"/out/{seed}/checkpoints"}},
            "logger": {"csv": {"save_dir": f"/out/{seed}"}}}
    return {"family": family, "divergence": divergence, "data": data, "seed": seed, "status": "completed",
            "config": base | (config or {}), "metrics": metrics, "history": history or {}, "run_dir": "/nonexistent"}


BACKBONES = {"GPT": {"n_head": 4, "n_embd": 128}, "S4D": {"n_embd": 136}, "Mamba": {"n_embd": 120, "d_state": 16}}


def char_sweep():
    runs = []
    for i, (name, sizes) in enumerate(BACKBONES.items()):
        for seed in (0, 1):
            backbone = {"_target_": f"divlab.lightning_modules.networks.{name.lower()}.{name}", **sizes}
            runs.append(record("ar", seed, {"val/bpc": 2.0 + i + seed / 10, "val/loss": 1.0 + i},
                               divergence="forward_kl", config={"experiment_name": f"char_{name.lower()}",
                                                                "model": {"backbone": backbone}}))
    return runs


def test_runs_that_differ_in_a_swept_key_are_separate_rows_with_that_key_as_a_column():
    table = build_table(char_sweep())
    assert table.columns == ["model.backbone"]
    assert table.counts == {f"ar/forward_kl (model.backbone={name})": 2 for name in BACKBONES}
    assert table.rows["ar/forward_kl (model.backbone=S4D)"]["val/bpc"].values == [3.0, 3.1]
    markdown = to_markdown(table).splitlines()
    assert markdown[0] == "| run | model.backbone | n | val/bpc ↓ | val/loss |"
    assert "| ar/forward_kl | GPT | 2 | **2.05 ± 0.071** | 1 ± 0 |" in markdown


def test_beta_and_learning_rate_sweeps_are_not_averaged_as_seeds():
    runs = [record("align", seed, {"val/true_reward": beta + seed / 100}, divergence="dpo",
                   config={"align_beta": beta, "model": {"beta": beta}}) for beta in (0.1, 1.0) for seed in (0, 1)]
    runs += [record("gan", 0, {"test/modes_covered": 8.0}, divergence="js", config={"model": {"optimizer": {"lr": lr}}})
             for lr in (1e-3, 3e-4, 1e-4)]
    table = build_table(runs)
    assert sorted(table.counts.values()) == [1, 1, 1, 2, 2]
    assert table.columns == ["align_beta", "model.optimizer.lr"]  # model.beta follows align_beta
    assert table.settings["align/dpo (align_beta=1, model.optimizer.lr=–)"] == ("align/dpo", "1", "–")


def test_a_key_older_runs_lack_names_a_row_only_when_no_key_every_run_sets_does():
    # DPO on 2,048 and on 32,768 prompts; the newer runs also carry a top-level key added to the configs later.
    runs = [record("align", 0, {"val/true_reward": 0.3}, divergence="dpo", config={"data": {"n_prompts": 2048}}),
            record("align", 0, {"val/true_reward": 0.9}, divergence="dpo",
                   config={"data": {"n_prompts": 32768}, "align_reward_model": "fit"})]
    assert build_table(runs).columns == ["data.n_prompts"]  # not align_reward_model (shallower, but absent in one)


def test_ignore_keys_merges_runs_that_differ_only_in_them_and_names_a_key_no_run_has(tmp_path, capsys):
    from divlab.cli.compare import main

    for seed, extra in ((0, {}), (1, {"align_reward_model": "fit", "model": {"beta": 0.1}})):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        rec = record("align", seed, {"val/true_reward": 0.5 + seed / 10}, divergence="ppo_gt", config=extra)
        (run_dir / "run.json").write_text(json.dumps({**rec, "run_dir": str(run_dir)}))
    dirs = [str(tmp_path / "run0"), str(tmp_path / "run1")]
    assert main([*dirs, "--out", str(tmp_path / "split")]) == 0
    assert "| align/ppo_gt | fit | 1 |" in (tmp_path / "split" / "table.md").read_text()  # two rows
    assert main([*dirs, "--out", str(tmp_path / "one"), "--ignore-keys", "align_reward_model", "model.beta"]) == 0
    assert "| align/ppo_gt | 2 |" in (tmp_path / "one" / "table.md").read_text()  # one row of 2 seeds
    assert main([*dirs, "--out", str(tmp_path / "bad"), "--ignore-keys", "model.nope"]) == 2
    assert "--ignore-keys model.nope: no run's config has it" in capsys.readouterr().err


def test_seeds_of_one_configuration_are_one_row_despite_paths_ids_and_seeded_keys():
    runs = [record("gan", seed, {"test/js": 0.1 * seed}, divergence="js") for seed in (0, 1, 2)]
    table = build_table(runs)
    assert table.columns == [] and table.counts == {"gan/js": 3}


def test_only_comparable_metrics_with_a_direction_are_ranked_and_ties_are_all_bold():
    runs = [record("gan", 0, {"test/loss": 0.5, "test/modes_covered": 8.0, "test/kl_exact_q": 0.0,
                              "test/fid_fmnist": 3.0, "test/kid_std_fmnist": 0.1}, divergence="js"),
            record("gan", 0, {"test/loss": 0.7, "test/modes_covered": 8.0, "test/kl_exact_q": 0.0,
                              "test/fid_fmnist": 2.0, "test/kid_std_fmnist": 0.2}, divergence="hinge"),
            record("vae", 0, {"test/loss": -90.0, "test/modes_covered": 5.0, "test/kl_exact_q": 1.0,
                              "test/fid_fmnist": 9.0, "test/kid_std_fmnist": 0.0})]
    table = build_table(runs)
    assert table.best("test/loss") == [] and table.best("test/kl_exact_q") == []
    assert table.best("test/kid_std_fmnist") == []
    assert table.best("test/modes_covered") == ["gan/hinge", "gan/js"]
    assert table.best("test/fid_fmnist") == ["gan/hinge"]
    header = to_markdown(table).splitlines()[0]
    assert "test/fid_fmnist ↓" in header and "test/modes_covered ↑" in header
    assert "| test/loss |" in header and "| test/kl_exact_q |" in header and "| test/kid_std_fmnist |" in header
    assert to_markdown(table).count("**") == 2 * 3
    tie = build_table(runs[:2], ["test/modes_covered"])
    assert tie.best("test/modes_covered") == []  # every row ties: nobody is best


def history(seed, steps_per_batch, epochs=2, batches_per_epoch=3):
    """What the run record keeps: [global step, value] at each log; validation at each epoch's end."""
    steps = [steps_per_batch * b for b in range(1, epochs * batches_per_epoch + 1)]
    epoch_ends = steps[batches_per_epoch - 1::batches_per_epoch]
    return {"train/loss": [[s, 1.0 / s + seed] for s in steps],
            "val/loss": [[s, 2.0 / s + seed] for s in epoch_ends],
            "val/nll": [[epoch_ends[-1], 1.0]],
            "lr-Adam": [[s, 1e-3] for s in steps]}


def test_curves_are_against_epochs_not_optimizer_steps(tmp_path):
    from divlab.tracking.plots import epochs, plot_curves

    gan = record("gan", 0, {}, divergence="js", history=history(0, steps_per_batch=2))
    vae = record("vae", 0, {}, history=history(0, steps_per_batch=1))
    # A GAN takes two optimizer steps (critic, generator) per batch: step 6 is the end of its first epoch.
    assert epochs(gan, [6, 12]) == [1.0, 2.0] and epochs(vae, [3, 6]) == [1.0, 2.0]
    # val/nll has one point (no line) and lr-Adam is bookkeeping: neither gets a panel.
    assert plot_curves([gan, vae], tmp_path / "curves.png") == ["train/loss", "val/loss"]


def test_quality_vs_coverage_has_seed_error_bars_and_the_anchors_of_its_data(tmp_path):
    from divlab.tracking.plots import plot_quality_vs_coverage

    def runs(data):
        return [record(family, seed, {"test/modes_covered": modes + seed, "test/high_quality_percent": hq - 10 * seed},
                       divergence=divergence, data=data)
                for family, divergence, modes, hq in (("gan", "js", 5, 60), ("gan", "mmd", 7, 40), ("vae", None, 8, 5))
                for seed in (0, 1, 2)]

    ring = plot_quality_vs_coverage(runs("ring8"), tmp_path / "ring8.png")
    assert ring["coverage"] == "test/modes_covered" and ring["quality"] == "test/high_quality_percent"
    modes, quality = ring["points"]["gan/js"]
    assert (modes.mean, modes.std, quality.mean, quality.std) == (6, 1, 50, 10)
    assert ring["anchors"] == ["GAN", "ALI", "PacGAN2", "PacGAN3", "PacGAN4", "Unrolled GAN", "VEEGAN"]
    assert plot_quality_vs_coverage(runs("moons"), tmp_path / "moons.png")["anchors"] == []


def test_last_sample_image_prefers_samples_then_the_latest_test_scatter(tmp_path):
    from divlab.tracking.plots import last_sample_image

    toy = tmp_path / "toy_metrics"
    toy.mkdir()
    for name in ("val_step0000005.png", "val_step0000010.png", "test_step0000010.png", "test_modes_step0000010.png",
                 "val_modes_step0000020.png"):
        (toy / name).touch()
    assert last_sample_image({"run_dir": str(tmp_path)}) == toy / "test_step0000010.png"
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "samples_step0000003.png").touch()
    assert last_sample_image({"run_dir": str(tmp_path)}) == tmp_path / "samples" / "samples_step0000003.png"
    assert last_sample_image({"run_dir": str(tmp_path / "missing")}) is None


def test_ignore_keys_takes_a_whole_section(tmp_path):
    from divlab.cli.compare import main

    for seed, lr in ((0, 1e-3), (1, 1e-4)):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        rec = record("align", seed, {"val/true_reward": 0.5}, divergence="dpo",
                     config={"model": {"optimizer": {"lr": lr}}, "data": {"n_prompts": 2048}})
        (run_dir / "run.json").write_text(json.dumps({**rec, "run_dir": str(run_dir)}))
    dirs = [str(tmp_path / "run0"), str(tmp_path / "run1")]
    assert main([*dirs, "--out", str(tmp_path / "one"), "--ignore-keys", "model"]) == 0
    assert "| align/dpo | 2 |" in (tmp_path / "one" / "table.md").read_text()


def test_rows_that_differ_in_a_checkpoint_path_are_named_by_the_part_that_differs():
    rm = "/home/u/outputs/align_reward_model/runs/{}/checkpoints/last.ckpt"
    runs = [record("align", seed, {"val/true_reward": 0.5}, divergence="ppo",
                   config={"model": {"reward_model": rm.format(name)}}) for name in ("2026-12-01_12-59", "anneal")
            for seed in (0, 1)]
    runs.append(
        record("align", 0, {"val/true_reward": 0.1}, divergence="ppo", config={"model": {"reward_model": None}})
    )
    table = build_table(runs)
    assert table.counts == {"align/ppo (model.reward_model=…/2026-12-01_12-59/…)": 2,
                            "align/ppo (model.reward_model=…/anneal/…)": 2, "align/ppo (model.reward_model=None)": 1}


def test_distinct_path_parts_keeps_different_paths_different():
    from divlab.tracking.table import distinct_path_parts

    assert distinct_path_parts(["a/b/c", "a/b/x/c", "None"]) == {"a/b/c": "…/c", "a/b/x/c": "…/x/c"}
    assert distinct_path_parts(["a/b", "a/b/c"]) == {"a/b": "…/b", "a/b/c": "…/b/c"}
    assert distinct_path_parts(["x/last.ckpt", "y/last.ckpt"]) == {"x/last.ckpt": "x/…", "y/last.ckpt": "y/…"}
    assert distinct_path_parts(["only/one", "fit"]) == {}
