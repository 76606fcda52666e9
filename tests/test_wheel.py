"""`pip install divlab` alone can run an experiment: the wheel ships the configs and the `divlab` command."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "divlab", "configs", "hydra_plugins")
NOT_SOURCES = shutil.ignore_patterns("__pycache__", "*.egg-info")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (a build writes build/ and *.egg-info beside its sources), with
    a machine's own git-ignored `configs/local/*.yaml` present, as it may be in a checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    (tmp / "src").mkdir()
    for name in BUILD_INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp / "src" / name, ignore=NOT_SOURCES)
        else:
            shutil.copy2(source, tmp / "src" / name)
    (tmp / "src" / "configs" / "local").mkdir(exist_ok=True)
    (tmp / "src" / "configs" / "local" / "default.yaml").write_text("# @package _global_\nseed: 7\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist"), str(tmp / "src")], check=True, capture_output=True)
    (built,) = (tmp / "dist").glob("divlab-*.whl")
    return built


def test_the_wheel_ships_every_config_and_the_divlab_command(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"divlab/configs/{path.relative_to(ROOT / 'configs').as_posix()}"
               for path in (ROOT / "configs").rglob("*.yaml") if "local" not in path.parts}
    assert {"divlab/configs/train.yaml", "divlab/configs/eval.yaml", "divlab/configs/experiment/vae_ring8.yaml",
            "divlab/configs/hydra/launcher/slurm.yaml"} <= configs
    assert configs <= names
    assert not [name for name in names if name.startswith("divlab/configs/local/")]
    assert {"divlab/cli/__init__.py", "divlab/cli/train.py", "divlab/config_dir.py"} <= names
    assert "hydra_plugins/divlab_study_sweeper/__init__.py" in names  # the studies' sweeper (configs/hydra/sweeper)
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "divlab = divlab.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_the_installed_wheel_trains_from_an_empty_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python, divlab = venv / "bin" / "python", venv / "bin" / "divlab"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True,
                   capture_output=True)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "offline"}
    where = subprocess.run([str(python), "-c", "import divlab, divlab.config_dir as c; print(divlab.__file__); "
                            "print(c.config_dir())"], cwd=empty, env=env, capture_output=True, text=True, check=True)
    package_file, configs = where.stdout.split()
    assert Path(package_file).is_relative_to(venv) and Path(configs) == Path(package_file).parent / "configs"

    run = subprocess.run([str(divlab), "train", "experiment=vae_ring8", "debug=fdr", "logger=csv"], cwd=empty,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (record,) = (empty / "outputs" / "vae_ring8" / "runs").glob("*/run.json")
    record = json.loads(record.read_text())
    assert (record["status"], record["family"], record["data"]) == ("completed", "vae", "ring8")
