"""The `divlab` command and the Python API (`divlab.train`, `load_run`, `compare`); where configs are found."""
import json
import subprocess
import sys

import pytest
import torch

import divlab
from divlab import cli, config_dir
from divlab.run_files import read_run_record
from divlab.tracking.runs import RunSelectionError

TINY_RUN = ["experiment=vae_ring8", "debug=tiny", "trainer=cpu", "logger=csv"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run through the Python API, as `divlab train ...` would make it."""
    log_dir = tmp_path_factory.mktemp("outputs")
    return divlab.train([*TINY_RUN, f"paths.log_dir={log_dir}", f"hydra.run.dir={log_dir / 'run'}"]), log_dir


# ---------------------------------------------------------------- where the configs are

def fake_install(root, *, checkout: bool, packaged: bool):
    """A divlab package directory under `root`, beside a checkout's configs/ and/or holding a packaged copy."""
    package = root / "divlab"
    for present, folder in ((checkout, root / "configs"), (packaged, package / "configs")):
        folder.mkdir(parents=True, exist_ok=True)
        if present:
            (folder / "train.yaml").write_text("seed: 0\n")
    return package


@pytest.mark.parametrize("checkout, packaged, expected", [
    (True, True, "configs"),             # a checkout (or an editable install): its configs/, being edited
    (False, True, "divlab/configs"),     # an installed wheel: the copy shipped inside the package
    (True, False, "configs"),
])
def test_config_dir_prefers_the_checkout_then_the_packaged_copy(tmp_path, monkeypatch, checkout, packaged, expected):
    monkeypatch.setattr(config_dir, "PACKAGE_DIR", fake_install(tmp_path, checkout=checkout, packaged=packaged))
    assert config_dir.config_dir() == tmp_path / expected


def test_config_dir_without_configs_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(config_dir, "PACKAGE_DIR", fake_install(tmp_path, checkout=False, packaged=False))
    with pytest.raises(FileNotFoundError, match="divlab/configs.*train.yaml"):
        config_dir.config_dir()


def test_this_checkout_runs_on_its_own_configs():
    assert config_dir.config_dir() == config_dir.PACKAGE_DIR.parent / "configs"


# ---------------------------------------------------------------- the divlab command

def test_help_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n  {command} " in out for command in ("train", "eval", "compare"))


def test_an_unknown_command_names_the_valid_ones(capsys):
    assert cli.main(["fit", "experiment=vae_ring8"]) == 2
    assert "unknown command 'fit'; choose one of train, eval, compare" in capsys.readouterr().err


def test_divlab_train_forwards_the_overrides(tmp_path):
    cli.main(["train", "experiment=vae_ring8", "debug=fdr", "logger=csv", "seed=3", f"hydra.run.dir={tmp_path}"])
    record = json.loads((tmp_path / "run.json").read_text())
    assert (record["status"], record["family"], record["data"], record["seed"]) == ("completed", "vae", "ring8", 3)
    assert (tmp_path / "train.log").is_file()  # Hydra names the job `train`, as `python train.py` did


def test_divlab_eval_and_compare_forward_their_arguments(trained, tmp_path, capsys):
    (run_dir, _), _ = trained
    cli.main(["eval", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "debug=fdr", "trainer=cpu",
              f"hydra.run.dir={tmp_path / 'eval'}"])
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert (report["family"], report["data"]) == ("vae", "ring8") and "test/nll" in report["metrics"]
    assert cli.main(["compare", str(run_dir), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "table.md").read_text() in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "cmp")]) == 2
    assert "divlab compare: error:" in capsys.readouterr().err


# ---------------------------------------------------------------- the Python API

def test_import_divlab_stays_cheap():
    code = "import sys, divlab; print(sorted(m for m in ('torch', 'lightning', 'hydra') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_train_returns_the_run_directory_and_its_metrics(trained):
    (run_dir, metrics), log_dir = trained
    assert run_dir == log_dir / "run"
    record = read_run_record(run_dir)
    assert record["status"] == "completed"
    assert metrics == pytest.approx(record["metrics"], nan_ok=True) and "test/nll" in metrics
    # the same files a command-line run leaves: Hydra's saved config and the job log
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()


def test_train_raises_the_runs_error_and_takes_a_list(tmp_path):
    with pytest.raises(Exception, match="data.batch_size"):
        divlab.train(
            ["experiment=vae_ring8", "debug=fdr", "logger=csv", "data.batch_size=0", f"hydra.run.dir={tmp_path}"]
        )
    with pytest.raises(TypeError, match="pass a list of overrides"):
        divlab.train("experiment=vae_ring8")


def test_load_run_rebuilds_config_data_and_the_checkpoints_model(trained):
    (run_dir, _), _ = trained
    config, datamodule, model = divlab.load_run(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    assert (config.seed, config.run.group, datamodule.name, type(model).__name__) == (0, "vae_ring8", "ring8", "VAE")
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert set(saved) == set(model.state_dict())
    assert all(torch.equal(saved[name], value) for name, value in model.state_dict().items())
    assert not model.training
    assert record["config"]["model"]["_target_"] == config.model._target_


def test_load_run_names_what_is_missing(trained, tmp_path):
    (run_dir, _), _ = trained
    with pytest.raises(FileNotFoundError, match="is not a run directory: it has no run.json"):
        divlab.load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint .*nope.ckpt"):
        divlab.load_run(run_dir, run_dir / "checkpoints" / "nope.ckpt")


def test_compare_returns_the_printed_table_for_directories_or_a_group(trained, tmp_path, capsys):
    (run_dir, metrics), log_dir = trained
    table = divlab.compare([run_dir])
    rows = [line for line in table.splitlines() if line.startswith("| vae |")]
    assert len(rows) == 1 and rows[0].startswith("| vae | 1 |")
    assert f"{metrics['test/nll']:.4g}" in rows[0]
    assert divlab.compare("vae_ring8", log_dir=log_dir) == table  # the experiment preset names the run's group
    assert divlab.compare(run_dir, out=tmp_path) == (tmp_path / "table.md").read_text()
    with pytest.raises(RunSelectionError, match="no runs of group 'nope' under .*; its groups: vae_ring8"):
        divlab.compare("nope", log_dir=log_dir)
